-- KEYS[1] a user's index, KEYS[2..] session keys to revoke (same hash tag)
-- ARGV[1..] the members (digests) matching KEYS[2..]
-- Deletes the sessions and their index members. Returns {revoked, members left in the index}.
local now = now_ms()
local revoked = 0
for i = 2, #KEYS do
  revoked = revoked + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], ARGV[i - 1])
end
settle_index(KEYS[1], now)
return { revoked, redis.call('ZCARD', KEYS[1]) }
