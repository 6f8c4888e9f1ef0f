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
argv_chunks('HSET', KEYS[1], 4, first_removed - 1)
argv_chunks('HDEL', KEYS[1], first_removed, #ARGV)
touch(KEYS[1], now, created, seen, idle, abs, 0)
return 1
