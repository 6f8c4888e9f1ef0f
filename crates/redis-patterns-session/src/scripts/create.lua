-- KEYS[1] new session key, KEYS[2] (optional) the owner's index
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] owner ('' for none), ARGV[4] digest (index member),
-- ARGV[5] created ms to keep ('' for now), ARGV[6] the fields (encoded map)
-- Returns the server's time (ms) when created, 0 when the key exists (never overwritten) or the
-- kept creation time is past the absolute timeout.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created = tonumber(ARGV[5]) or now
if now >= created + abs then
  return 0
end
store(KEYS[1], created, now, ARGV[3], ARGV[6], idle, abs)
if KEYS[2] then
  redis.call('ZADD', KEYS[2], created + abs, ARGV[4])
  settle_index(KEYS[2], now)
end
return now
