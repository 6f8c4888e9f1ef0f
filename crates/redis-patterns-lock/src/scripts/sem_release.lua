-- Returns a semaphore permit, if the caller still holds an unexpired one.
-- KEYS[1] holders; ARGV[1] owner token
-- Returns 1 when a live permit was returned, 0 when it had expired or was never held.
local now = now_ms()
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(expiry) > now then
  return 1
end
return 0
