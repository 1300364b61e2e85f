-- Forget a waiter that gave up (core/budget/bucket.py withdraw): it no longer holds a place.
-- KEYS[1] the budget hash; ARGV[1] class, ARGV[2] waiter id. Returns the fields removed.
return redis.call('HDEL', KEYS[1], 'w:' .. ARGV[1] .. ':' .. ARGV[2], 'q:' .. ARGV[2])
