-- Releases (ARGV[1] = 0) or extends (ARGV[1] = ttl in us) one lease.
-- KEYS[1]  sorted set of lease ids scored by expiry (us)
-- ARGV     ttl (us) or 0, lease id
-- Returns  1 when the lease was alive, 0 when it had expired or was already released
local now = now_us()
local ttl = tonumber(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
if ttl == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 1
end
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil((tonumber(last[2]) - now) / 1000), 1))
return 1
