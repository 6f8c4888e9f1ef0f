-- KEYS[1] new session key, KEYS[2] (optional) the owner's index
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] user ('' for none), ARGV[4] digest (index member),
-- ARGV[5] created ms to keep ('' for now), ARGV[6..] field, value pairs
-- Returns 1 when created, 0 when the key exists (never overwritten).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created = tonumber(ARGV[5]) or now
if now >= created + abs then
  return 0
end
local deadline = math.min(now + idle, created + abs)
-- Metadata and the first chunk of fields in one HSET; the rest (large sessions) in chunks.
local stop = math.min(5 + CHUNK, #ARGV)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], '__created', created, '__seen', now, '__deadline', deadline,
    '__user', ARGV[3], unpack(ARGV, 6, stop))
else
  redis.call('HSET', KEYS[1], '__created', created, '__seen', now, '__deadline', deadline,
    unpack(ARGV, 6, stop))
end
argv_chunks('HSET', KEYS[1], stop + 1, #ARGV)
redis.call('PEXPIREAT', KEYS[1], deadline)
if KEYS[2] then
  redis.call('ZADD', KEYS[2], created + abs, ARGV[4])
  settle_index(KEYS[2], now)
end
return 1
