-- Save one attempt's state and record the attempt in the index and the hwm, all or nothing.
-- KEYS[1] state, KEYS[2] index (sorted set, member = score = attempt number), KEYS[3] hwm
-- ARGV[1] state (any bytes), ARGV[2] attempt number (positive integer), ARGV[3] TTL in seconds
-- Returns 1.
local n = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], n, ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local hwm = tonumber(redis.call('GET', KEYS[3])) or 0
if n > hwm then
  hwm = n
end
redis.call('SET', KEYS[3], string.format('%d', hwm), 'EX', ARGV[3])
return 1
