-- On a graceful shutdown: makes the entries this consumer holds but will not handle claimable
-- at once (idle = min-idle), and sets the group's hand-back mark so that the other consumers'
-- next upkeep step claims them without waiting for their claim interval.
-- KEYS[1]  the stream
-- KEYS[2]  the group's hand-back mark (expires after min-idle)
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  min-idle in milliseconds
-- ARGV[4..] pairs: entry id, 1 when its last delivery never reached a handler (its delivery
--          counter is lowered by one, so it does not count as an attempt) or 0
-- Returns the number of entries handed back (those still pending for this consumer).
local n = 0
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    local count = tonumber(p[1][4])
    if ARGV[i + 1] == '1' and count > 0 then count = count - 1 end
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3],
      'RETRYCOUNT', count, 'JUSTID')
    n = n + 1
  end
end
if n > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
end
return n
