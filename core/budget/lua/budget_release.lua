-- Give a lease back and adapt the rate (core/budget/bucket.py release).
-- ARGV[13] lease id, ARGV[14] outcome (ok, throttled, failed), ARGV[15] Retry-After in ms
-- Returns {1 if this call started or lengthened the pause else 0, pause left ms, rate as text}.
local lease, outcome, retry_ms = ARGV[13], ARGV[14], math.max(0, tonumber(ARGV[15]) or 0)
redis.call('HDEL', key, 'l:' .. lease)
local fields = {}
local started = 0
if outcome == 'throttled' then
  local untill = now + retry_ms
  if untill > paused then started = 1 end
  paused = math.max(paused, untill)
  tokens = 0
  fields['paused'] = paused
  local cut_at = S.cut_at or -1e15
  if now >= cut_at + math.max(1000, retry_ms) then
    rate = math.max(P.min_rps, rate * P.decrease)
    fields['cut_at'] = now
  end
  fields['rate'] = rate
  fields['inc_at'] = paused
elseif outcome == 'ok' and now >= paused then
  local step = math.min(1000, math.max(0, now - (S.inc_at or 0)))
  rate = math.min(P.max_rps, rate + P.increase_rps * step / 1000)
  fields['rate'] = rate
  fields['inc_at'] = now
end
save(fields)
return {started, math.max(0, paused - now), tostring(rate)}
