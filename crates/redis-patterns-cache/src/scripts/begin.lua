-- Starts a load: takes the refresh lease if it is free, reads the generation and whether the
-- entry exists, in one round trip.
-- KEYS[1] lease, KEYS[2] generation, KEYS[3] entry
-- ARGV[1] lease token, ARGV[2] PX of the lease
-- Returns {1 if the lease was taken else 0, generation or '', 1 if the entry exists else 0}.
-- A caller that saw a miss, takes the lease and finds the entry present re-reads it: another
-- process filled it (and released the lease) in between.
local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local gen = redis.call('GET', KEYS[2]) or ''
local exists = redis.call('EXISTS', KEYS[3])
if taken then
  return {1, gen, exists}
end
return {0, gen, exists}
