-- Admit one request (core/budget/bucket.py admit): a token and an in-flight lease, or a wait.
-- ARGV[13] class (interactive, event, background), ARGV[14] lease id (also the waiter id),
-- ARGV[15] how long the request has queued, ms (interactive: oldest first)
-- Returns {admitted 0/1, wait_ms, reason, rate as text, in flight after}.
local cls, lease = ARGV[13], ARGV[14]
local since = now - math.max(0, tonumber(ARGV[15]) or 0)
if queued[lease] ~= nil and queued[lease] < since then since = queued[lease] end
local ok, wait, reason = false, 0, 'ok'
if now < paused then
  wait, reason = paused - now, 'paused'
elseif cls == 'interactive' then
  -- this request's place in line: interactive waiters queued before (since, lease)
  local need = 1
  for wid, s in pairs(queued) do
    if wid ~= lease and (s < since or (s == since and wid < lease)) then need = need + 1 end
  end
  if tokens < 1 then
    wait, reason = math.ceil((1 - tokens) * 1000 / rate), 'rate'
  elseif tokens < need then
    wait, reason = math.ceil((need - tokens) * 1000 / rate), 'queue'
  elseif S.leases + need > P.max_inflight then
    wait, reason = math.floor(P.poll_ms / 10), 'inflight'
  else
    ok = true
  end
else
  local higher = waiting('interactive', lease) or (cls == 'background' and waiting('event', lease))
  local need = math.min(P.burst, 1 + P.burst * P.reserve_share)
  local reserve_slots = math.floor(P.max_inflight * P.reserve_share)
  local credit = floors[cls] or 0
  if (not higher) and tokens >= need and S.leases < P.max_inflight - reserve_slots then
    ok = true
  elseif credit >= 1 and tokens >= 0 and S.leases < P.max_inflight then
    ok, reason = true, 'floor'
    floors[cls] = credit - 1
  elseif higher then
    local floor_rate = rate * P.floor_share
    if floor_rate > 0 then wait = math.ceil((1 - credit) * 1000 / floor_rate) else wait = P.poll_ms end
    reason = 'yield'
  elseif tokens < need then
    wait, reason = math.ceil((need - tokens) * 1000 / rate), 'rate'
  else
    wait, reason = math.floor(P.poll_ms / 10), 'inflight'
  end
end
local inflight = S.leases
if ok then
  tokens = tokens - 1
  inflight = inflight + 1
  redis.call('HSET', key, 'l:' .. lease, tostring(now + P.lease_ms))
  redis.call('HDEL', key, 'w:' .. cls .. ':' .. lease, 'q:' .. lease)
  save({})
  return {1, 0, reason, tostring(rate), inflight}
end
redis.call('HSET', key, 'w:' .. cls .. ':' .. lease, tostring(now + P.waiter_ms))
if cls == 'interactive' then redis.call('HSET', key, 'q:' .. lease, tostring(since)) end
save({})
wait = math.max(1, math.min(P.poll_ms, wait))
return {0, wait, reason, tostring(rate), inflight}
