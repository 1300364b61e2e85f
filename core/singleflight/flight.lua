-- The cross-process flight's atomic steps; each "-- @script NAME" section is one script.
-- All keys of a flight share its name's hash tag (see core.keys.Keys.flight).

-- @script acquire
-- KEYS[1] lease, KEYS[2] epoch; ARGV[1] token, ARGV[2] lease ms, ARGV[3] epoch ttl ms.
-- Takes the lease if free and bumps the epoch: {1, new epoch}; else {0, holder's epoch}.
-- A missing epoch starts at the server clock in milliseconds, so an epoch that expired is never
-- handed out again: the key needs to live only a little longer than the lease.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2], now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
  end
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, epoch}
end
return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}

-- @script extend
-- KEYS[1] lease, KEYS[2] epoch; ARGV[1] token, ARGV[2] lease ms, ARGV[3] epoch ttl ms.
-- Compare-and-pexpire of the lease, and the epoch with it: 1 if still ours, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

-- @script release
-- KEYS[1] lease; ARGV[1] token. Compare-and-delete: 1 if it was ours, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

-- @script finish
-- KEYS[1] epoch, KEYS[2] outcome, KEYS[3] lease; ARGV[1] epoch, ARGV[2] outcome payload,
-- ARGV[3] outcome ttl ms, ARGV[4] channel, ARGV[5] token.
-- Fenced finish: only while ARGV[1] is the current epoch, store the outcome, publish it and
-- release our lease, all at once (no reader sees "published but still leased").
-- Returns the number of subscribers reached, or -1 when fenced off (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local receivers = redis.call('PUBLISH', ARGV[4], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[5] then
  redis.call('DEL', KEYS[3])
end
return receivers
