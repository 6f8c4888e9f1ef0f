-- Concurrency limit: at most `limit` leases alive at once; a lease expires unless released or
-- extended, so a crashed holder frees its slot.
-- KEYS[1]  sorted set of lease ids scored by expiry (us)
-- ARGV     limit, lease ttl (us), lease id
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 granted, 0 denied
local now = now_us()
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local held = redis.call('ZCARD', KEYS[1])
if held < limit then
  redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[3])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local reset = tonumber(last[2]) - now
  redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(reset / 1000), 1))
  return {1, limit - held - 1, 0, reset}
end
-- Denied: the earliest expiry is the latest a slot frees up (a release may come sooner).
local k = held - limit
local first = redis.call('ZRANGE', KEYS[1], k, k, 'WITHSCORES')
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {0, 0, math.max(tonumber(first[2]) - now, 1), math.max(tonumber(last[2]) - now, 1)}
