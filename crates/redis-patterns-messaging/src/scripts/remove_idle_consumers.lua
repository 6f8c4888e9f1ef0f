-- Deletes the consumers of a group that have no pending entries and were idle at least min-idle.
-- Atomic, so a consumer cannot receive an entry between the check and XGROUP DELCONSUMER.
-- KEYS[1]  the stream
-- ARGV[1]  group
-- ARGV[2]  min-idle in milliseconds
-- Returns the names removed.
local list = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local min_idle = tonumber(ARGV[2])
local removed = {}
for _, c in ipairs(list) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
    elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
  end
  if name and pending == 0 and idle and idle >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed[#removed + 1] = name
  end
end
return removed
