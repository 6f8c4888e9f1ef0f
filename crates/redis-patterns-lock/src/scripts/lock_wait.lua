-- An unfenced lock was found held by a caller that waits: marks the waiter so the release
-- publishes, and reports how long the holder's lease has left.
-- KEYS[1] lock key, KEYS[2] waiters marker (a companion of KEYS[1])
-- Returns the holder's pttl, or -2 when the lock is free again (then nothing is marked).
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  redis.call('SET', KEYS[2], '1', 'PX', math.max(pttl, 0) + 1000)
end
return pttl
