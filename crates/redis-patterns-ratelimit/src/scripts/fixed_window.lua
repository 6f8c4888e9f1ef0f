-- Fixed window: at most `limit` units per window; a window opens at the first admitted unit.
-- KEYS[1]  hash {s = window start (us), n = units admitted in it}
-- ARGV     limit, window (us), cost
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > limit
local now = now_us()
local limit, window, cost = limit_args()
if cost > limit then
  return CANNOT_PASS
end

local state = redis.call('HMGET', KEYS[1], 's', 'n')
local start = tonumber(state[1])
local used = tonumber(state[2]) or 0
-- A new window when there is none or the current one is over. A clock that went backwards
-- (failover to a server with a slower clock) keeps the current window.
if start == nil or now >= start + window then
  start = now
  used = 0
end
local reset = math.min(start + window - now, window)

if used + cost <= limit then
  used = used + cost
  redis.call('HSET', KEYS[1], 's', string.format('%d', start), 'n', used)
  redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
  return {1, limit - used, 0, reset}
end
-- Denied: nothing changes, but a window made longer since the last admit must not be cut
-- short by the TTL that admit set (GT only ever lengthens it, and writes nothing otherwise).
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000), 'GT')
return {0, math.max(limit - used, 0), reset, reset}
