-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms, ARGV[2] expiry date ms, ARGV[3..] field, JSON value pairs (the whole data)
-- Replaces the data of a live session; a missing or expired session is not brought back.
-- Returns 1 when saved, 0 otherwise.
local abs, expires = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created = tonumber(redis.call('HGET', KEYS[1], '__created'))
if not created then
  return 0
end
local deadline = math.min(expires, created + abs)
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('DEL', KEYS[1])
local stop = math.min(2 + CHUNK, #ARGV)
redis.call('HSET', KEYS[1], '__created', created, '__expires', ARGV[2], '__deadline', deadline,
  unpack(ARGV, 3, stop))
argv_chunks('HSET', KEYS[1], stop + 1, #ARGV)
redis.call('PEXPIREAT', KEYS[1], deadline)
return 1
