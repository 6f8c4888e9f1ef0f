-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms, ARGV[2] expiry date ms, ARGV[3] the data (encoded map of JSON values)
-- Returns {1, now} when created (or already expired: nothing to keep), {0, now} when the key
-- exists (never overwritten).
local abs, expires = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 0, now }
end
local deadline = math.min(expires, now + abs)
if deadline > now then
  redis.call('SET', KEYS[1], encode('T1', now, expires, '', ARGV[3]), 'PXAT', deadline)
end
return { 1, now }
