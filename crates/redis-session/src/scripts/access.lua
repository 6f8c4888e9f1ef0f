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
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) ~= '__' or all[i] == '__user' then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
end
return out
