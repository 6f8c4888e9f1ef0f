-- Hands a lock from its owner straight to a waiter of the same process: one round trip where a
-- release and the waiter's acquire take two. The fence moves on exactly as for an acquire.
-- KEYS[1] lock key, KEYS[2] fencing counter (a companion of KEYS[1])
-- ARGV[1] owner token, ARGV[2] the waiter's token, ARGV[3] its lease ms, ARGV[4] counter horizon
-- ms ('0': the counter never expires; '-1': no fencing, the counter is not touched)
-- Returns {1, fence} when handed over (fence 0 without fencing), {0, 0} when the owner no longer
-- holds the lock (nothing is written then).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, 0}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[4] == '-1' then
  return {1, 0}
end
return {1, next_fence(KEYS[2], ARGV[4])}
