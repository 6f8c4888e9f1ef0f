-- A consumer's upkeep step: moves the delayed entries that are due (server clock) into the
-- stream, oldest due first, and takes the group's hand-back mark. Atomic, so two consumers never
-- move one entry twice: the first removes it from the set before anyone else can see it due.
-- KEYS[1]  the stream
-- KEYS[2]  the delayed set (zset: job id -> due ms)
-- KEYS[3]  the delayed jobs (hash: job id -> "<trim>\n<payload>")
-- KEYS[4]  the group's hand-back mark
-- ARGV[1]  most entries to move
-- Returns {moved, ms until the next due entry (-1: none), 1 when the hand-back mark was taken}.
-- Moved entries are `p <payload> j <job id>`, trimmed by the rule their producer stored.
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  if v then
    redis.call('HDEL', KEYS[3], id)
    local nl = string.find(v, '\n', 1, true)
    local rule, payload = 'U', v
    if nl then
      rule = string.sub(v, 1, nl - 1)
      payload = string.sub(v, nl + 1)
    end
    local kind, n = string.sub(rule, 1, 1), string.sub(rule, 2)
    if kind == 'L' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', n, '*', 'p', payload, 'j', id)
    elseif kind == 'A' then
      local minid = now - tonumber(n)
      if minid < 0 then minid = 0 end
      redis.call('XADD', KEYS[1], 'MINID', '~', string.format('%.0f', minid), '*',
        'p', payload, 'j', id)
    else
      redis.call('XADD', KEYS[1], '*', 'p', payload, 'j', id)
    end
  end
end
local next_due = -1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then
  next_due = tonumber(first[2]) - now
  if next_due < 0 then next_due = 0 end
end
return {#ids, next_due, redis.call('DEL', KEYS[4])}
