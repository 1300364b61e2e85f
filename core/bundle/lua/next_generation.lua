-- Shared by bundle_fence.lua and bundle_delete.lua (store.py puts it in front of both).
-- Takes the next fencing generation of one course: INCR of the fence, lifted above the stored
-- (or tombstone) generation so a lost fence key can never hand out a generation the store would
-- reject. A missing fence (the course's first build, or Redis lost its data) starts at the server
-- clock in milliseconds, so generations keep growing across a data loss (and stay below 2^53).
-- A damaged key never wedges the course: a bundle key of another type counts as no bundle (the
-- next write replaces it), and a fence that is not an integer string is re-seeded like a lost one.
-- The fence of a course without a live bundle (first build, tombstone, unknown id) expires after
-- orphan_ttl seconds; a stored write (bundle_write.lua) makes it persistent again.
-- Returns the new generation, the stored one (0 if none) and 1 when a live bundle is stored.
local function next_generation(bundle, fence, orphan_ttl)
  local stored, live = 0, 0
  if redis.call('TYPE', bundle)['ok'] == 'hash' then
    stored = tonumber(string.match(redis.call('HGET', bundle, 'generation') or '', '^%d+$') or '0')
    if stored > 0 and redis.call('HGET', bundle, 'deleted') ~= '1' then
      live = 1
    end
  end
  local counter = nil
  if redis.call('TYPE', fence)['ok'] == 'string' then
    counter = string.match(redis.call('GET', fence), '^%d+$')
  end
  if counter == nil then
    local now = redis.call('TIME')
    redis.call('SET', fence, now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
  end
  local gen = redis.call('INCR', fence)
  if gen <= stored then
    gen = stored + 1
    redis.call('SET', fence, gen)
  end
  if live == 0 then
    redis.call('EXPIRE', fence, orphan_ttl)
  end
  return gen, stored, live
end
