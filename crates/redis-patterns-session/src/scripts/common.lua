-- Shared helpers, prepended to every session script after redis-patterns-core's server clock (now_ms()).
-- A session is one string (see src/layout.rs):
--   'S1' | created (16 digits) | seen (16 digits) | owner length (8 digits) | owner | fields
-- created and seen are ms of the server clock (seen: the last recorded access); the fields are a
-- MessagePack map of names to the codec's bytes (cmsgpack). A tower-sessions record is the same
-- with the mark 'T1' and its expiry date in the seen slot.

local HEAD = 42

local function ms16(n)
  return string.format('%016.0f', n)
end

-- The value at `key`, or nil when there is none or it is not a string (an older layout's hash).
local function value_of(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' then
    return nil
  end
  return v
end

-- created, seen, owner ('' for none), fields (encoded) of value `v` marked `mark`; nil when it is
-- not such a value.
local function parse(v, mark)
  if not v or string.sub(v, 1, 2) ~= mark or #v < HEAD then
    return nil
  end
  local created, seen = tonumber(string.sub(v, 3, 18)), tonumber(string.sub(v, 19, 34))
  local owner_len = tonumber(string.sub(v, 35, HEAD))
  if not created or not seen or not owner_len then
    return nil
  end
  return created, seen, string.sub(v, HEAD + 1, HEAD + owner_len), string.sub(v, HEAD + owner_len + 1)
end

-- A value from its parts.
local function encode(mark, created, seen, owner, fields)
  return mark .. ms16(created) .. ms16(seen) .. string.format('%08d', #owner) .. owner .. fields
end

-- The fields of an encoded map as a table (an empty one for '').
local function fields_of(encoded)
  if encoded == '' then
    return {}
  end
  return cmsgpack.unpack(encoded)
end

-- created, seen, owner, fields and the whole value of a live session; nil (and the key deleted
-- when it is a session that expired by either timeout) otherwise.
local function live(key, now, idle, abs)
  local v = value_of(key)
  local created, seen, owner, fields = parse(v, 'S1')
  if not created then
    return nil
  end
  if now >= created + abs or now >= seen + idle then
    redis.call('DEL', key)
    return nil
  end
  return created, seen, owner, fields, v
end

-- Records an access when the last one is at least `interval` ms old: moves `seen` in place and the
-- key's expiry. Returns the last recorded access time.
local function touch(key, now, created, seen, idle, abs, interval)
  if now - seen >= interval then
    redis.call('SETRANGE', key, 18, ms16(now))
    redis.call('PEXPIREAT', key, math.min(now + idle, created + abs))
    return now
  end
  return seen
end

-- Writes a session whole, its expiry at the earlier deadline.
local function store(key, created, now, owner, fields, idle, abs)
  redis.call('SET', key, encode('S1', created, now, owner, fields), 'PXAT',
    math.min(now + idle, created + abs))
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
