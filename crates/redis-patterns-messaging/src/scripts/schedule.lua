-- Schedules a delayed entry: a sorted set of job ids by due time (server clock) and a hash of
-- their stored values, both companions of the stream. A job id already scheduled keeps its entry.
-- KEYS[1]  the delayed set (zset: job id -> due ms)
-- KEYS[2]  the delayed jobs (hash: job id -> "<trim>\n<payload>")
-- ARGV[1]  "after" (ARGV[2] is a delay in ms) or "at" (ARGV[2] is a Unix time in ms)
-- ARGV[2]  milliseconds
-- ARGV[3]  job id
-- ARGV[4]  stored value: the stream's trim rule ("L<maxlen>", "A<max age ms>" or "U"), a
--          newline, the payload
-- ARGV[5]  horizon ms: both keys expire this long after the latest due time
-- Returns {1, due ms} when scheduled, {0, due ms of the entry already there} for a known job id.
local now = now_ms()
local existing = redis.call('ZSCORE', KEYS[1], ARGV[3])
if existing then
  return {0, existing}
end
local due
if ARGV[1] == 'at' then
  due = tonumber(ARGV[2])
else
  due = now + tonumber(ARGV[2])
end
redis.call('ZADD', KEYS[1], due, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ahead = tonumber(last[2]) - now
if ahead < 0 then ahead = 0 end
local ttl = string.format('%.0f', ahead + tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, string.format('%.0f', due)}
