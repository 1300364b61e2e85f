-- Drop a course's fence counter when it has no bundle and no tombstone (an id that never existed),
-- so probing unknown ids leaves nothing behind.
-- KEYS[1] bundle hash, KEYS[2] fence counter. Returns 1 when the counter was dropped.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.call('DEL', KEYS[2])
end
return 0
