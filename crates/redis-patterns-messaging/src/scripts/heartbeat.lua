-- Resets the idle time of entries the calling consumer is still working on (XCLAIM to itself,
-- JUSTID: the delivery counter is unchanged), so no other consumer claims them while it lives.
-- An entry another consumer has claimed meanwhile is left alone.
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3..] entry ids
-- Returns the ids that are no longer pending for this consumer.
local args, lost = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    args[#args + 1] = ARGV[i]
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if #args > 5 then
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return lost
