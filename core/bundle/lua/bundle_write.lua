-- Swap in a new bundle only if its generation is newer than the stored one (or the tombstone's).
-- KEYS[1] bundle hash, KEYS[2] fence counter, KEYS[3] kept generations hash (same hash tag)
-- ARGV[1] generation of the new bundle; ARGV[2] generations to keep (N); ARGV[3] content digest
-- of the new bundle; ARGV[4..] field, value pairs (every field of a live bundle)
-- Returns {1, generation} when stored, {0, stored generation} when rejected as stale.
-- One HSET replaces every field, so a reader's HMGET sees the old bundle or the new one, never a mix.
-- A bundle key of another type (damage) is replaced; a stored write makes key and fence persistent.
-- The replaced live bundle is kept (its zstd bytes and a JSON meta) in KEYS[3] under its
-- generation, unless its content digest equals the new one's (a rebuild that changed nothing must
-- not push a different earlier version out); only the newest N kept generations stay.
local gen = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local stored = 0
local live = false
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  stored = tonumber(string.match(redis.call('HGET', KEYS[1], 'generation') or '', '^%d+$') or '0')
  live = stored > 0 and redis.call('HGET', KEYS[1], 'deleted') ~= '1'
else
  redis.call('DEL', KEYS[1])
end
if gen <= stored then
  return {0, stored}
end
if live and keep > 0 then
  local old = redis.call('HMGET', KEYS[1], 'zstd', 'zstd_crc', 'built_at', 'etag', 'totals',
    'raw_size', 'zstd_size', 'stored_at', 'digest')
  if old[1] and old[9] ~= ARGV[3] then
    if redis.call('TYPE', KEYS[3])['ok'] ~= 'hash' then redis.call('DEL', KEYS[3]) end
    local gs = string.format('%d', stored)
    local meta = cjson.encode({generation = gs, zstd_crc = old[2] or '', built_at = old[3] or '',
      etag = old[4] or '', totals = old[5] or '{}', raw_size = old[6] or '0',
      zstd_size = old[7] or '0', stored_at = old[8] or '0'})
    redis.call('HSET', KEYS[3], gs, old[1], gs .. ':meta', meta)
    local gens = {}
    for _, field in ipairs(redis.call('HKEYS', KEYS[3])) do
      local g = string.match(field, '^(%d+)$')
      if g then table.insert(gens, tonumber(g)) end
    end
    table.sort(gens)
    for i = 1, #gens - keep do
      local g = string.format('%d', gens[i])
      redis.call('HDEL', KEYS[3], g, g .. ':meta')
    end
  end
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], unpack(ARGV, 4))
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PERSIST', KEYS[3]) end
return {1, gen}
