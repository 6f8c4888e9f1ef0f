-- Takes one permit of a counting semaphore whose permits expire.
-- KEYS[1] sorted set of holders (member = owner token, score = expiry in server ms),
-- KEYS[2] fencing counter (a companion of KEYS[1])
-- ARGV[1] owner token, ARGV[2] lease in milliseconds, ARGV[3] number of permits
-- Returns {1, fence} when granted, {0, ms until the earliest permit expires} when all are taken.
local now = now_ms()
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return {1, redis.call('INCR', KEYS[2])}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
