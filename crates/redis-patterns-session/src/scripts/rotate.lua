-- KEYS[1] current session key, KEYS[2] new session key (same hash tag), KEYS[3] (optional) the
-- owner's index
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] expected owner ('' for none),
-- ARGV[4] current digest, ARGV[5] new digest
-- Returns 1 when renamed, 0 when there is no live session, -1 when the owner is not the expected
-- one (read it again and retry), -2 when the new key exists (pick another id).
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created, seen, owner = live(KEYS[1], now, idle, abs)
if not created then
  return 0
end
if owner ~= ARGV[3] then
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
redis.call('RENAME', KEYS[1], KEYS[2])
touch(KEYS[2], now, created, seen, idle, abs, 0)
if KEYS[3] then
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('ZADD', KEYS[3], created + abs, ARGV[5])
  settle_index(KEYS[3], now)
end
return 1
