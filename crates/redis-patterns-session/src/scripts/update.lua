-- KEYS[1] session key
-- ARGV[1] idle ms, ARGV[2] absolute ms, ARGV[3] number of pairs to set,
-- ARGV[4..] field, value pairs to set, then field names to remove
-- Returns the server's time (ms) when the session was live and updated, 0 otherwise (nothing is
-- written). Only the named fields change: concurrent writers of other fields lose nothing.
local idle, abs, nset = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local created, seen, owner, encoded = live(KEYS[1], now, idle, abs)
if not created then
  return 0
end
local fields = fields_of(encoded)
local first_removed = 4 + 2 * nset
for i = 4, first_removed - 1, 2 do
  fields[ARGV[i]] = ARGV[i + 1]
end
for i = first_removed, #ARGV do
  fields[ARGV[i]] = nil
end
store(KEYS[1], created, now, owner, cmsgpack.pack(fields), idle, abs)
return now
