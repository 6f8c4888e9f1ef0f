-- Live leases, by the clock of the node that holds the key (one round trip, right on a cluster).
-- KEYS[1]  sorted set of lease ids scored by expiry (us)
-- Returns  the number of leases that have not expired
local now = now_us()
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
