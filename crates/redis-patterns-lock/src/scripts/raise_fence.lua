-- Redlock, second phase: lifts the fencing counter to the token the quorum agreed on.
-- Only the current owner may do it, so it cannot race a later holder's INCR.
-- KEYS[1] lock key, KEYS[2] fencing counter; ARGV[1] owner token, ARGV[2] agreed fence
-- Returns 1 when the caller owns the lock (counter is now >= ARGV[2]), 0 otherwise.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
