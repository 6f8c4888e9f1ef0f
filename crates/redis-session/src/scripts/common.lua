-- Shared helpers, prepended to every session script.
-- Session hash: user fields as they are, plus reserved metadata fields
--   __created  creation time, ms since the epoch (server clock)
--   __seen     last recorded access, ms (server clock)
--   __user     owner's user id (absent for anonymous sessions)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
    redis.call('HSET', key, '__seen', now)
    redis.call('PEXPIREAT', key, math.min(now + idle, created + abs))
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
