-- Moves one entry to the dead-letter stream and acknowledges it, if the calling consumer still
-- owns it (another consumer may have claimed it meanwhile; then this is a no-op).
-- The entry stays in the source stream (other groups may still need it); retention trims it.
-- KEYS[1]  the stream
-- KEYS[2]  its dead-letter stream (a companion key: same slot)
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  entry id
-- ARGV[4]  reason
-- ARGV[5]  attempts
-- ARGV[6]  dead-letter stream MAXLEN (approximate)
-- Returns 1 when moved, 0 when the entry is no longer pending for this consumer.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'id', ARGV[3], 'reason', ARGV[4], 'attempts', ARGV[5], 'group', ARGV[1], 'consumer', ARGV[2]}
if e[1] then
  for i = 1, #e[1][2] do args[#args + 1] = e[1][2][i] end
end
redis.call(unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
