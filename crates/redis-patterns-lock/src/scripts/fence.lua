-- The next fencing token of counter `key`, prepended after redis-patterns-core's server clock
-- (now_us()). `horizon` (ms, as a string) '0': a plain INCR, the counter never expires. Otherwise
-- the counter expires `horizon` ms after this grant and never goes below the server clock in
-- microseconds, so a counter that expired (or was lost) and comes back starts above every token
-- it handed out before (the proof is in docs/lock.md).
local function next_fence(key, horizon)
  if horizon == '0' then
    return redis.call('INCR', key)
  end
  local fence = tonumber(redis.call('GET', key) or '0') + 1
  local floor = now_us()
  if fence < floor then
    fence = floor
  end
  redis.call('SET', key, string.format('%d', fence), 'PX', horizon)
  return fence
end
