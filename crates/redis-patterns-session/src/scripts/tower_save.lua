-- KEYS[1] session key (digest of a tower-sessions id)
-- ARGV[1] absolute ms, ARGV[2] expiry date ms, ARGV[3] the data (encoded map, the whole data)
-- Replaces the data of a live record; a missing or expired one is not brought back.
-- Returns {1, now} when saved, {0, now} otherwise.
local abs, expires = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local created = parse(value_of(KEYS[1]), 'T1')
if not created then
  return { 0, now }
end
local deadline = math.min(expires, created + abs)
if deadline <= now then
  redis.call('DEL', KEYS[1])
  return { 0, now }
end
redis.call('SET', KEYS[1], encode('T1', created, expires, '', ARGV[3]), 'PXAT', deadline)
return { 1, now }
