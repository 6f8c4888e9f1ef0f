-- Token bucket: holds up to `capacity` tokens, refilled continuously at `refill` tokens per `period`.
-- key  string "<tokens> <ts>": tokens (may be fractional) at time ts (us); TTL = until full again
local function token_bucket(key, _, capacity, period, cost, refill, clock)
  if cost > capacity then
    return CANNOT_PASS
  end
  local now = clock()
  local tokens, ts
  local state = redis.call('GET', key)
  if state then
    local t, s = string.match(state, '^(%S+) (%S+)$')
    tokens, ts = tonumber(t), tonumber(s)
  end
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
    return {1, math.floor(tokens), 0, reset}, function()
      -- Once full again the bucket equals a fresh one, so the key may go.
      redis.call('SET', key, string.format('%.17g %d', tokens, ts), 'PX',
        math.max(math.ceil(reset / 1000), 1))
    end
  end
  -- Denied: the key must live until the bucket is full under these numbers, which a lowered refill
  -- or a raised capacity since the last admit pushes out (GT only ever lengthens the TTL).
  local reset = time_for(capacity - tokens)
  return {0, math.floor(tokens), time_for(cost - tokens), reset}, function()
    redis.call('PEXPIRE', key, math.max(math.ceil(reset / 1000), 1), 'GT')
  end
end
LIMIT = token_bucket
