-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms
-- Returns nil when there is no live session, else {expiry date ms, field, value, ...}.
local abs = tonumber(ARGV[1])
local now = now_ms()
local meta = redis.call('HMGET', KEYS[1], '__created', '__expires')
local created, expires = tonumber(meta[1]), tonumber(meta[2])
if not created or not expires then
  return nil
end
if now >= created + abs or now >= expires then
  redis.call('DEL', KEYS[1])
  return nil
end
-- The stored text, not tostring(expires): Lua prints numbers with 14 digits.
local out = { meta[2] }
append_fields(out, KEYS[1])
return out
