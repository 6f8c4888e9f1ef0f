-- Counts a visit and stamps it with the server's clock; both keys expire after ARGV[1] ms.
-- KEYS[1] counter, KEYS[2] its "last visit" companion (same slot). Returns the new count.
local n = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], now_us(), 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
