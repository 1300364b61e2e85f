-- Replace a course's bundle with a tombstone carrying a fresh fencing generation.
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag)
-- ARGV[1] deletedAt (RFC 3339), ARGV[2] tombstone TTL in seconds
-- Returns {generation of the tombstone, 1 if a live bundle was replaced else 0}.
-- Any in-flight rebuild holds a lower generation, so its late write is rejected by bundle_write.
local stored = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') or 0
local was_live = 0
if stored > 0 and redis.call('HGET', KEYS[1], 'deleted') ~= '1' then
  was_live = 1
end
-- A missing fence (the course's first build, or Redis lost its data) starts at the server clock
-- in milliseconds, so generations keep growing across a data loss (and stay below 2^53).
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[2], now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
end
local gen = redis.call('INCR', KEYS[2])
if gen <= stored then
  gen = stored + 1
  redis.call('SET', KEYS[2], gen)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'generation', gen, 'deleted', '1', 'deleted_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return {gen, was_live}
