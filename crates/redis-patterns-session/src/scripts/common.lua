-- Shared helpers, prepended to every session script after redis-patterns-core's server clock (now_ms()).
-- Session hash: user fields as they are, plus reserved metadata fields
--   __created  creation time, ms since the epoch (server clock)
--   __seen     last recorded access, ms (server clock)
--   __deadline the key's expiry as last set, ms (PEXPIREAT): lets a plain read (HGETALL + PTTL)
--              recover the server's clock as __deadline - PTTL
--   __user     owner's user id (absent for anonymous sessions)

-- created, seen of a live session; nil (and the key deleted) when it has expired by either timeout.
local function live(key, now, idle, abs)
  local meta = redis.call('HMGET', key, '__created', '__seen')
  local created, seen = tonumber(meta[1]), tonumber(meta[2])
  if not created or not seen then
    return nil
  end
  if now >= created + abs or now >= seen + idle then
    redis.call('DEL', key)
    return nil
  end
  return created, seen
end

-- Records an access when the last one is at least `interval` ms old: moves the idle deadline.
-- Returns the last recorded access time.
local function touch(key, now, created, seen, idle, abs, interval)
  if now - seen >= interval then
    local deadline = math.min(now + idle, created + abs)
    redis.call('HSET', key, '__seen', now, '__deadline', deadline)
    redis.call('PEXPIREAT', key, deadline)
    return now
  end
  return seen
end

-- Drops index members whose absolute deadline has passed and lets the index expire with its
-- last member.
local function settle_index(idx, now)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', idx, tonumber(last[2]))
  else
    redis.call('DEL', idx)
  end
end

-- Lua's unpack refuses more than about 8000 values at once (LUAI_MAXCSTACK), so long runs of
-- arguments go to Redis in chunks of this many (even: field, value pairs stay whole).
local CHUNK = 1000

-- `cmd key ARGV[first..last]` in as few calls as the unpack limit allows (HSET with pairs,
-- HDEL with names). Nothing when first > last.
local function argv_chunks(cmd, key, first, last)
  for i = first, last, CHUNK do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + CHUNK - 1, last)))
  end
end

-- Appends the field, value pairs of hash `key` to `out`, leaving out the reserved `__` fields
-- except those `keep` names (a set such as { __user = true }, or nil). Returns `out`.
local function append_fields(out, key, keep)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) ~= '__' or (keep and keep[all[i]]) then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
