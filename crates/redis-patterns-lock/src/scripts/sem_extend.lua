-- Renews a semaphore permit, if the caller still holds an unexpired one.
-- KEYS[1] holders; ARGV[1] owner token, ARGV[2] new lease in milliseconds
-- Returns 1 when renewed, 0 when the permit had expired (it is then removed) or was never held.
local now = now_ms()
local ttl = tonumber(ARGV[2])
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then
  return 0
end
if tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
