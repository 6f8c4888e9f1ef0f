-- KEYS[1] session key, KEYS[2] (optional) its owner's index
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] expected owner ('' for none), ARGV[4] digest (the
-- index member)
-- Atomically reads and deletes a live session (first step of moving it to another owner), and
-- drops it from its owner's index.
-- Returns nil when there is no live session, {} when the owner is not the expected one (read it
-- again and retry), else {created, fields (encoded)}.
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created, _, owner, fields = live(KEYS[1], now, idle, abs)
if not created then
  return nil
end
if owner ~= ARGV[3] then
  return {}
end
redis.call('DEL', KEYS[1])
if KEYS[2] then
  redis.call('ZREM', KEYS[2], ARGV[4])
  settle_index(KEYS[2], now)
end
return { tostring(created), fields }
