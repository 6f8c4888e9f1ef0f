-- Sliding window log: exact; at most `limit` units in any window ending now.
-- KEYS[1]  sorted set, one member per admitted unit, scored by its time (us)
-- KEYS[2]  sequence counter that makes every member unique
-- ARGV     limit, window (us), cost
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > limit
local now = now_us()
local limit, window, cost = limit_args()
if cost > limit then
  return CANNOT_PASS
end

-- The window is (now - window, now]: a unit admitted exactly `window` ago has left it.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
local used = redis.call('ZCARD', KEYS[1])

if used + cost <= limit then
  local last = redis.call('INCRBY', KEYS[2], cost)
  local score = string.format('%d', now)
  local args = {}
  for i = last - cost + 1, last do
    args[#args + 1] = score
    args[#args + 1] = i
    if #args >= 200 then
      redis.call('ZADD', KEYS[1], unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', KEYS[1], unpack(args))
  end
  local ttl = math.ceil(window / 1000)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {1, limit - used - cost, 0, window}
end

-- Denied: wait until enough of the oldest units leave the window.
local remaining = math.max(limit - used, 0)
local must_leave = used + cost - limit
local nth = redis.call('ZRANGE', KEYS[1], must_leave - 1, must_leave - 1, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local retry = math.max(tonumber(nth[2]) + window - now, 1)
local reset = math.max(tonumber(newest[2]) + window - now, 1)
-- A window made longer since the last admit must not be cut short by that admit's TTL; both keys
-- live equally long so the sequence never restarts under live members.
local ttl = math.ceil(reset / 1000)
redis.call('PEXPIRE', KEYS[1], ttl, 'GT')
redis.call('PEXPIRE', KEYS[2], ttl, 'GT')
return {0, remaining, retry, reset}
