-- Starts a load: takes the refresh lease if it is free and reads the generation, in one round trip.
-- KEYS[1] lease, KEYS[2] generation
-- ARGV[1] lease token, ARGV[2] PX of the lease
-- Returns {1 if the lease was taken else 0, generation or ''}.
local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local gen = redis.call('GET', KEYS[2]) or ''
if taken then
  return {1, gen}
end
return {0, gen}
