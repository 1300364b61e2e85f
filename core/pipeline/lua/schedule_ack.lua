-- Acknowledge a claimed entry once its task message is on the broker.
-- KEYS: due, claims, payload (one shard) ; ARGV: id, payload_json as claimed, claim_ms (token)
-- Removes only this claim (another worker may hold a newer one), and drops the payload only if
-- nothing newer is pending or claimed under the id.
local held = redis.call('ZSCORE', KEYS[2], ARGV[1])
if held and tonumber(held) == tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  held = false
end
if held == false and redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
    and redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
