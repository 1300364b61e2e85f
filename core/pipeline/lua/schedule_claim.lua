-- Claim the due entries of one shard: one claimer per entry, however many workers.
-- KEYS: due (zset id -> due ms), claims (zset id -> claim expiry ms), payload (hash id -> JSON)
-- ARGV: now_ms, claim_lease_ms, limit
-- Returns a flat list {id, due_ms, payload, claim_ms, ...}; claim_ms (the lease expiry) is the
-- claim's token: only an acknowledgement carrying it removes that claim. A claim whose lease lapsed (its claimer died
-- before acknowledging) goes back to due first, so a kill between claim and enqueue loses nothing.
local now = tonumber(ARGV[1])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], 'NX', now, id)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local out = {}
local claim = now + tonumber(ARGV[2])
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZREM', KEYS[1], id)
  local payload = redis.call('HGET', KEYS[3], id)
  if payload then
    redis.call('ZADD', KEYS[2], claim, id)
    out[#out + 1] = id
    out[#out + 1] = due[i + 1]
    out[#out + 1] = payload
    out[#out + 1] = tostring(claim)
  end
end
return out
