-- Takes a lock and hands out the next fencing token, atomically.
-- KEYS[1] lock key, KEYS[2] fencing counter (same slot: a companion of KEYS[1])
-- ARGV[1] owner token (128 random bits, hex), ARGV[2] lease in milliseconds
-- Returns {1, fence} when taken, {0, pttl of the current holder} when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
