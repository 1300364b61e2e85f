-- Shared by budget_admit.lua and budget_release.lua (store.py puts it in front of both); the
-- same arithmetic as core/budget/bucket.py.
-- KEYS[1]  the budget hash of one upstream: rate, tokens, at, paused, cut_at, inc_at,
--          f:<class> (floor credits), l:<lease id> (lease expiry ms), w:<class>:<id> (waiter expiry),
--          q:<id> (an interactive waiter's place in line: since ms; goes with w:interactive:<id>)
-- ARGV[1]  now in ms, or "" to use the Redis server's clock (one clock for the whole fleet)
-- ARGV[2..12] max_rps, burst, max_inflight, lease_ms, reserve_share, floor_share, decrease,
--          increase_rps, min_rps, waiter_ms, poll_ms
local key = KEYS[1]
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local P = {
  max_rps = tonumber(ARGV[2]), burst = tonumber(ARGV[3]), max_inflight = tonumber(ARGV[4]),
  lease_ms = tonumber(ARGV[5]), reserve_share = tonumber(ARGV[6]), floor_share = tonumber(ARGV[7]),
  decrease = tonumber(ARGV[8]), increase_rps = tonumber(ARGV[9]), min_rps = tonumber(ARGV[10]),
  waiter_ms = tonumber(ARGV[11]), poll_ms = tonumber(ARGV[12]),
}
local floor_burst = math.max(1, P.burst * P.floor_share)

local S = {leases = 0, waiting = {}, floors = {}}
local queued, live = {}, {}
local raw = redis.call('HGETALL', key)
local expired = {}
for i = 1, #raw, 2 do
  local f, v = raw[i], raw[i + 1]
  local kind = string.sub(f, 1, 2)
  if kind == 'l:' or kind == 'w:' then
    if tonumber(v) <= now then
      expired[#expired + 1] = f
    elseif kind == 'l:' then
      S.leases = S.leases + 1
    else
      local cls, wid = string.match(f, '^w:([^:]+):(.*)$')
      S.waiting[#S.waiting + 1] = {cls, wid}
      if cls == 'interactive' then live[wid] = true end
    end
  elseif kind == 'q:' then
    queued[string.sub(f, 3)] = tonumber(v)
  elseif kind == 'f:' then
    S.floors[string.sub(f, 3)] = tonumber(v)
  else
    S[f] = tonumber(v)
  end
end
for wid, _ in pairs(queued) do
  if not live[wid] then
    expired[#expired + 1] = 'q:' .. wid
    queued[wid] = nil
  end
end
if #expired > 0 then redis.call('HDEL', key, unpack(expired)) end

local rate = S.rate or P.max_rps
rate = math.min(P.max_rps, math.max(P.min_rps, rate))
local at = S.at or 0
local tokens, elapsed
if S.tokens == nil then
  tokens, elapsed = P.burst, 0
else
  -- nothing accrues while the fleet is paused: it resumes at the rate, not with a burst
  tokens, elapsed = S.tokens, math.max(0, now - math.max(at, S.paused or 0))
end
tokens = math.min(P.burst, tokens + elapsed * rate / 1000)
local floors = {}
for _, cls in ipairs({'event', 'background'}) do
  local credit = (S.floors[cls] or 0) + elapsed * rate * P.floor_share / 1000
  floors[cls] = math.min(floor_burst, credit)
end
at = math.max(at, now)
local paused = S.paused or 0

local function waiting(cls, other)
  for _, w in ipairs(S.waiting) do
    if w[1] == cls and w[2] ~= other then return true end
  end
  return false
end

local function save(fields)
  local args = {'tokens', tostring(tokens), 'at', tostring(at),
    'f:event', tostring(floors['event']), 'f:background', tostring(floors['background'])}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = tostring(v)
  end
  redis.call('HSET', key, unpack(args))
  local keep = math.max(P.lease_ms, paused - now, 0) + 3600000
  redis.call('PEXPIRE', key, math.floor(keep))
end
