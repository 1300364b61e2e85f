-- Shared by bundle_fence.lua and bundle_delete.lua (store.py puts it in front of both).
-- Takes the next fencing generation of one course: INCR of the fence, lifted above the stored
-- (or tombstone) generation so a lost fence key can never hand out a generation the store would
-- reject. A missing fence (the course's first build, or Redis lost its data) starts at the server
-- clock in milliseconds, so generations keep growing across a data loss (and stay below 2^53).
-- Returns the new generation and the stored one (0 if none).
local function next_generation(bundle, fence)
  local stored = tonumber(redis.call('HGET', bundle, 'generation') or '0') or 0
  if redis.call('EXISTS', fence) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', fence, now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
  end
  local gen = redis.call('INCR', fence)
  if gen <= stored then
    gen = stored + 1
    redis.call('SET', fence, gen)
  end
  return gen, stored
end
