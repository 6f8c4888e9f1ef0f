-- KEYS[1] a user's index, KEYS[2..] the session keys of its members (same hash tag)
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3..] the members (digests) matching KEYS[2..]
-- Drops members whose session has expired or is gone; returns {digest, created, seen, ...} of the
-- live ones.
local idle, abs = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 2, #KEYS do
  local digest = ARGV[i + 1]
  local created, seen = live(KEYS[i], now, idle, abs)
  if created then
    out[#out + 1] = digest
    out[#out + 1] = tostring(created)
    out[#out + 1] = tostring(seen)
  else
    redis.call('ZREM', KEYS[1], digest)
  end
end
settle_index(KEYS[1], now)
return out
