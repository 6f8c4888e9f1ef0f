-- Sliding window log: exact; at most `limit` units in any window ending now.
-- key   sorted set, one member per admitted unit, scored by its time (us)
-- key2  sequence counter that makes every member unique
local function sliding_log(key, key2, limit, window, cost, _, clock)
  if cost > limit then
    return CANNOT_PASS
  end
  local now = clock()
  -- The window is (now - window, now]: a unit admitted exactly `window` ago has left it.
  local oldest = '(' .. string.format('%d', now - window)
  local used = redis.call('ZCOUNT', key, oldest, '+inf')

  if used + cost <= limit then
    return {1, limit - used - cost, 0, window}, function()
      redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window))
      local last = redis.call('INCRBY', key2, cost)
      local score = string.format('%d', now)
      local args = {}
      for i = last - cost + 1, last do
        args[#args + 1] = score
        args[#args + 1] = i
        if #args >= 200 then
          redis.call('ZADD', key, unpack(args))
          args = {}
        end
      end
      if #args > 0 then
        redis.call('ZADD', key, unpack(args))
      end
      local ttl = math.ceil(window / 1000)
      redis.call('PEXPIRE', key, ttl)
      redis.call('PEXPIRE', key2, ttl)
    end
  end

  -- Denied: wait until enough of the oldest units leave the window.
  local remaining = math.max(limit - used, 0)
  local must_leave = used + cost - limit
  local nth = redis.call('ZRANGE', key, oldest, '+inf', 'BYSCORE', 'LIMIT', must_leave - 1, 1,
    'WITHSCORES')
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local retry = math.max(tonumber(nth[2]) + window - now, 1)
  local reset = math.max(tonumber(newest[2]) + window - now, 1)
  return {0, remaining, retry, reset}, function()
    -- A window made longer since the last admit must not be cut short by that admit's TTL; both
    -- keys live equally long so the sequence never restarts under live members.
    local ttl = math.ceil(reset / 1000)
    redis.call('PEXPIRE', key, ttl, 'GT')
    redis.call('PEXPIRE', key2, ttl, 'GT')
  end
end
LIMIT = sliding_log
