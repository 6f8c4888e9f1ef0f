-- Takes a lock and hands out the next fencing token, atomically; a caller that will wait marks it.
-- KEYS[1] lock key, KEYS[2] fencing counter, KEYS[3] waiters marker (companions of KEYS[1])
-- ARGV[1] owner token, ARGV[2] lease ms, ARGV[3] counter horizon ms ('0': the counter never
-- expires), ARGV[4] '1' when the caller waits for a release notification, else '0'
-- Returns {1, fence} when taken, {0, pttl of the current holder} when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, next_fence(KEYS[2], ARGV[3])}
end
local pttl = redis.call('PTTL', KEYS[1])
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], '1', 'PX', math.max(pttl, 0) + 1000)
end
return {0, pttl}
