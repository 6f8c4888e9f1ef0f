-- KEYS[1] new session key, KEYS[2] (optional) the owner's index
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] owner ('' for none), ARGV[4] digest (index member),
-- ARGV[5] the fields (encoded map)
-- Returns the server's time (ms) when created, 0 when the key exists (never overwritten).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
store(KEYS[1], now, now, ARGV[3], ARGV[5], idle, abs)
if KEYS[2] then
  redis.call('ZADD', KEYS[2], now + abs, ARGV[4])
  settle_index(KEYS[2], now)
end
return now
