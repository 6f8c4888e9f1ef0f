-- Token bucket: holds up to `capacity` tokens, refilled continuously at `refill` tokens per `period`.
-- KEYS[1]  hash {t = tokens (may be fractional), ts = time of that count (us)}
-- ARGV     capacity, period (us), cost, refill (tokens per period)
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > capacity
local now = now_us()
local capacity, period, cost, refill = limit_args()
if cost > capacity then
  return CANNOT_PASS
end

local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
elseif now > ts then
  tokens = tokens + (now - ts) * refill / period
  ts = now
end
-- A smaller capacity than last time caps what is left; a clock that went backwards refills nothing.
tokens = math.min(tokens, capacity)

local function time_for(missing)
  if missing <= 0 then return 0 end
  return math.max(math.ceil(missing * period / refill), 1)
end

if tokens >= cost then
  tokens = tokens - cost
  local reset = time_for(capacity - tokens)
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', string.format('%d', ts))
  -- Once full again the bucket equals a fresh one, so the key may go.
  redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(reset / 1000), 1))
  return {1, math.floor(tokens), 0, reset}
end
-- Denied: the key must live until the bucket is full under these numbers, which a lowered refill
-- or a raised capacity since the last admit pushes out (GT only ever lengthens the TTL).
local reset = time_for(capacity - tokens)
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(reset / 1000), 1), 'GT')
return {0, math.floor(tokens), time_for(cost - tokens), reset}
