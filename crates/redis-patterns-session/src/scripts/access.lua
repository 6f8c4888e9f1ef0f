-- KEYS[1] session key
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] touch interval ms, ARGV[4] '1' to return the data
-- Returns nil when there is no live session; otherwise {created, seen, fields...} when ARGV[4] is
-- '1', or {created, seen} without the data.
local idle, abs, interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local created, seen = live(KEYS[1], now, idle, abs)
if not created then
  return nil
end
seen = touch(KEYS[1], now, created, seen, idle, abs, interval)
local out = { tostring(created), tostring(seen) }
if ARGV[4] == '1' then
  append_fields(out, KEYS[1], { __user = true })
end
return out
