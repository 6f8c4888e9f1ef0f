-- Claims entries that stayed pending longer than min-idle (their consumer died or is stuck),
-- and moves the ones that were already delivered max-deliveries times to the dead-letter stream.
-- KEYS[1]  the stream
-- KEYS[2]  its dead-letter stream (a companion key: same slot)
-- ARGV[1]  group
-- ARGV[2]  consumer claiming
-- ARGV[3]  min-idle in milliseconds
-- ARGV[4]  XAUTOCLAIM cursor
-- ARGV[5]  COUNT
-- ARGV[6]  max deliveries
-- ARGV[7]  dead-letter stream MAXLEN (approximate)
-- Returns {next cursor, {{id, times delivered (including this one), {field, value, ...}}, ...},
--          number dead-lettered, number of pending ids whose entry was already deleted}
-- Redis 7 drops pending ids whose entry was deleted from the pending list and lists them in the
-- third element of the reply; Redis 6.2 returns a nil in place of such an entry instead (false
-- here), which is skipped (counted as deleted) rather than indexed.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local max = tonumber(ARGV[6])
local out = {}
local dead = 0
local deleted = 0
for _, e in ipairs(r[2]) do
  if not e or not e[1] then
    deleted = deleted + 1
  else
    local id = e[1]
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local n = 1
    if p[1] then n = tonumber(p[1][4]) end
    if n > max then
      local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*',
        'id', id, 'reason', 'delivered ' .. (n - 1) .. ' times without an acknowledgement',
        'attempts', n - 1, 'group', ARGV[1], 'consumer', ARGV[2]}
      if e[2] then
        for i = 1, #e[2] do args[#args + 1] = e[2][i] end
      end
      redis.call(unpack(args))
      redis.call('XACK', KEYS[1], ARGV[1], id)
      dead = dead + 1
    else
      out[#out + 1] = {id, n, e[2] or {}}
    end
  end
end
if r[3] then deleted = deleted + #r[3] end
return {r[1], out, dead, deleted}
