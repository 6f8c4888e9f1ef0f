-- KEYS[1] session key
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] number of pairs to set,
-- ARGV[4..] field, value pairs to set, then field names to remove
-- Returns 1 when the session was live and updated, 0 otherwise (nothing is written).
local idle, abs, nset = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local created, seen = live(KEYS[1], now, idle, abs)
if not created then
  return 0
end
local first_removed = 4 + 2 * nset
for i = 4, first_removed - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
for i = first_removed, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
touch(KEYS[1], now, created, seen, idle, abs, 0)
return 1
