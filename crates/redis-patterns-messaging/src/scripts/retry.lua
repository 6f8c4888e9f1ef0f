-- Before this consumer runs an entry's handler again (after its backoff): sets the entry's
-- delivery counter to the attempt about to start and resets its idle time, if the entry is still
-- pending for this consumer.
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  consumer
-- ARGV[3]  entry id
-- ARGV[4]  the attempt about to start
-- Returns 1 when the entry is still this consumer's, 0 when another consumer claimed it.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', ARGV[4], 'JUSTID')
return 1
