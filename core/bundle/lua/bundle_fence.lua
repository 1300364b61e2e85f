-- Take the next fencing generation of one course (see next_generation.lua).
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag); ARGV[1] orphan fence TTL in seconds.
-- Returns the new generation.
local gen = next_generation(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return gen
