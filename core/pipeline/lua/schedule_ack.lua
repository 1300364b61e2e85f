-- Acknowledge a claimed entry once its task message is on the broker.
-- KEYS: due, claims, payload (one shard) ; ARGV: id, payload_json as claimed
-- The payload is dropped only if no newer put replaced it meanwhile.
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
