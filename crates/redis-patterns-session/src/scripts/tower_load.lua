-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms
-- Returns nil when there is no live record (an expired one is deleted), else {now, value}.
local abs = tonumber(ARGV[1])
local now = now_ms()
local v = value_of(KEYS[1])
local created, expires = parse(v, 'T1')
if not created then
  return nil
end
if now >= created + abs or now >= expires then
  redis.call('DEL', KEYS[1])
  return nil
end
return { now, v }
