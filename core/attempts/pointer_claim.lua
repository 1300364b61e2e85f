-- Point one learner's resource at an attempt, keeping the high-water mark (hwm) above it.
-- KEYS[1] pointer, KEYS[2] hwm
-- ARGV[1] attempt number (positive integer), ARGV[2] TTL in seconds, ARGV[3] mode:
--   "set"  point at ARGV[1], whatever the pointer held
--   "nx"   point at ARGV[1] unless the pointer already holds an attempt
--   "next" like "nx", but the new number is max(ARGV[1], hwm + 1)
-- Returns {the number the pointer now holds, 1 if this call wrote it else 0}.
-- A pointer holding anything but a positive integer counts as absent. The hwm only grows, and
-- every write gives it a fresh TTL so it outlives the attempt it covers.
local n = tonumber(ARGV[1])
local ttl = ARGV[2]
local mode = ARGV[3]
if mode ~= 'set' then
  local current = tonumber(redis.call('GET', KEYS[1]))
  if current and current >= 1 and current == math.floor(current) then
    return {current, 0}
  end
end
local hwm = tonumber(redis.call('GET', KEYS[2])) or 0
if mode == 'next' and n <= hwm then
  n = hwm + 1
end
redis.call('SET', KEYS[1], string.format('%d', n), 'EX', ttl)
if n > hwm then
  hwm = n
end
redis.call('SET', KEYS[2], string.format('%d', hwm), 'EX', ttl)
return {n, 1}
