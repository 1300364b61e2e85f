-- Take the next fencing generation of one course.
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag)
-- Returns the new generation: INCR of the fence, lifted above the stored (or tombstone) generation
-- so a lost fence key can never hand out a generation the store would reject.
local stored = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') or 0
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
return gen
