-- Take the next fencing generation of one course.
-- KEYS[1] bundle hash, KEYS[2] fence counter (same hash tag)
-- Returns the new generation: INCR of the fence, lifted above the stored (or tombstone) generation
-- so a lost fence key can never hand out a generation the store would reject.
local stored = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') or 0
local gen = redis.call('INCR', KEYS[2])
if gen <= stored then
  gen = stored + 1
  redis.call('SET', KEYS[2], gen)
end
return gen
