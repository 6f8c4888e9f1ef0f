-- Cancels a scheduled entry that has not been moved into its stream yet.
-- KEYS[1]  the delayed set
-- KEYS[2]  the delayed jobs
-- ARGV[1]  job id
-- Returns 1 when it was cancelled, 0 when no such job waits (never scheduled, moved or cancelled).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
