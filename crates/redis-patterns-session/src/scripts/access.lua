-- KEYS[1] session key
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] touch interval ms, ARGV[4] '1' to return the value
-- Returns nil when there is no live session; otherwise {now, created, seen, value or ''} (seen after
-- the access was recorded; the value as it was before, its header's seen then stale).
local idle, abs, interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local created, seen, _, _, value = live(KEYS[1], now, idle, abs)
if not created then
  return nil
end
if ARGV[4] ~= '1' then
  value = ''
end
seen = touch(KEYS[1], now, created, seen, idle, abs, interval)
return { now, created, seen, value }
