-- Replace a course's bundle with a tombstone carrying a fresh fencing generation
-- (next_generation.lua).
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag)
-- ARGV[1] deletedAt (RFC 3339), ARGV[2] tombstone TTL in seconds
-- Returns {generation of the tombstone, 1 if a live bundle was replaced else 0}.
-- Any in-flight rebuild holds a lower generation, so its late write is rejected by bundle_write.
local gen, stored = next_generation(KEYS[1], KEYS[2])
local was_live = 0
if stored > 0 and redis.call('HGET', KEYS[1], 'deleted') ~= '1' then
  was_live = 1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'generation', gen, 'deleted', '1', 'deleted_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return {gen, was_live}
