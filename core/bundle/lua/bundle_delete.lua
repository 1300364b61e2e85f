-- Replace a course's bundle with a tombstone carrying a fresh fencing generation
-- (next_generation.lua).
-- KEYS[1] bundle hash, KEYS[2] fence counter, KEYS[3] kept generations hash (same hash tag)
-- ARGV[1] deletedAt (RFC 3339), ARGV[2] tombstone TTL in seconds, ARGV[3] orphan fence TTL (s)
-- Returns {generation of the tombstone, 1 if a live bundle was replaced else 0}.
-- Any in-flight rebuild holds a lower generation, so its late write is rejected by bundle_write.
-- The course has no live bundle any more, so its fence expires like any orphan fence, and its
-- kept generations (a way back from a wrong delete) live as long as the tombstone.
local gen, stored, live = next_generation(KEYS[1], KEYS[2], tonumber(ARGV[3]))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'generation', gen, 'deleted', '1', 'deleted_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2])) end
return {gen, live}
