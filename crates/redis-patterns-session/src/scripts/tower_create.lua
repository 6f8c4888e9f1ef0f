-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms, ARGV[2] expiry date ms, ARGV[3..] field, JSON value pairs
-- Returns 1 when created, 0 when the key exists (never overwritten).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local abs, expires = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local deadline = math.min(expires, now + abs)
if deadline <= now then
  return 1 -- already expired: nothing to keep
end
local stop = math.min(2 + CHUNK, #ARGV)
redis.call('HSET', KEYS[1], '__created', now, '__expires', ARGV[2], '__deadline', deadline,
  unpack(ARGV, 3, stop))
argv_chunks('HSET', KEYS[1], stop + 1, #ARGV)
redis.call('PEXPIREAT', KEYS[1], deadline)
return 1
