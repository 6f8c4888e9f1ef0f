-- KEYS[1] session key
-- ARGV[1] idle ms, ARGV[2] absolute ms
-- Atomically reads and deletes a live session (first step of moving it to another owner).
-- Returns nil when there is no live session, else {created, fields...} without metadata.
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created = live(KEYS[1], now, idle, abs)
if not created then
  return nil
end
local out = { tostring(created) }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) ~= '__' then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
redis.call('DEL', KEYS[1])
return out
