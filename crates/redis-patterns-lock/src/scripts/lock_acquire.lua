-- Takes a lock and hands out the next fencing token, atomically; a caller that will wait marks it.
-- KEYS[1] lock key, KEYS[2] fencing counter, KEYS[3] waiters marker (companions of KEYS[1])
-- ARGV[1] owner token, ARGV[2] lease ms, ARGV[3] counter horizon ms ('0': the counter never
-- expires), ARGV[4] '1' when the caller waits for a release notification, else '0'
-- Returns {1, fence} when taken, {0, pttl of the current holder} when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '0' then
    return {1, redis.call('INCR', KEYS[2])}
  end
  -- Expiring counter: never below the server clock in microseconds, so a counter that expired
  -- (or was lost) and comes back starts above every token it handed out before.
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
  local floor = now_us()
  if fence < floor then
    fence = floor
  end
  redis.call('SET', KEYS[2], string.format('%d', fence), 'PX', ARGV[3])
  return {1, fence}
end
local pttl = redis.call('PTTL', KEYS[1])
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], '1', 'PX', math.max(pttl, 0) + 1000)
end
return {0, pttl}
