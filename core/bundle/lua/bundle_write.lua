-- Swap in a new bundle only if its generation is newer than the stored one (or the tombstone's).
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag)
-- ARGV[1] generation of the new bundle; ARGV[2..] field, value pairs (every field of a live bundle)
-- Returns {1, generation} when stored, {0, stored generation} when rejected as stale.
-- One HSET replaces every field, so a reader's HMGET sees the old bundle or the new one, never a mix.
-- A bundle key of another type (damage) is replaced; a stored write makes key and fence persistent.
local gen = tonumber(ARGV[1])
local stored = 0
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  stored = tonumber(string.match(redis.call('HGET', KEYS[1], 'generation') or '', '^%d+$') or '0')
else
  redis.call('DEL', KEYS[1])
end
if gen <= stored then
  return {0, stored}
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], unpack(ARGV, 2))
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
return {1, gen}
