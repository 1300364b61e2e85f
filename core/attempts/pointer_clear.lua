-- Delete the attempt pointer only if it still holds ARGV[1]; the hwm keeps covering that number.
-- KEYS[1] pointer, KEYS[2] hwm
-- ARGV[1] attempt number (positive integer, decimal), ARGV[2] TTL in seconds for the hwm
-- Returns 1 when the pointer held ARGV[1] and was deleted, else 0 (nothing changed).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local n = tonumber(ARGV[1])
local hwm = tonumber(redis.call('GET', KEYS[2])) or 0
if n > hwm then
  hwm = n
end
redis.call('SET', KEYS[2], string.format('%d', hwm), 'EX', ARGV[2])
return 1
