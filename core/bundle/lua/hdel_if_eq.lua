-- Delete a hash field only if it still holds the expected value (compare-and-delete).
-- KEYS[1] hash; ARGV[1] field, ARGV[2] expected value
-- Returns 1 when deleted, 0 when the field is absent or now holds another value.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
