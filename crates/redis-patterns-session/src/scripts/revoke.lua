-- KEYS[1] a user's index, KEYS[2..] session keys to revoke (same hash tag)
-- ARGV[1] the user, ARGV[2..] the members (digests) matching KEYS[2..]
-- Deletes the sessions that belong to the user and drops the members from the user's index. A
-- key in the same bucket that is not this user's session (another user's, an anonymous one, a
-- tower-sessions record) is left alone. Returns {revoked, members left in the index}.
local now = now_ms()
local revoked = 0
for i = 2, #KEYS do
  local created, _, owner = parse(value_of(KEYS[i]), 'S1')
  if created and owner == ARGV[1] then
    revoked = revoked + redis.call('DEL', KEYS[i])
  end
  redis.call('ZREM', KEYS[1], ARGV[i])
end
settle_index(KEYS[1], now)
return { revoked, redis.call('ZCARD', KEYS[1]) }
