-- Put (or move) one entry of the durable schedule.
-- KEYS: due (zset id -> due ms), payload (hash id -> JSON) ; all of one shard (one hash tag)
-- ARGV: id, due_ms, payload_json
-- A later put for the same id replaces the earlier one: one pending entry per id.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
