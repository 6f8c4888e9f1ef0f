-- Sliding window counter: the previous window's count, weighted by how much of it still overlaps
-- the sliding window, plus the current window's count. O(1) memory, approximate.
-- KEYS[1]  hash {w = current window start (us), c = current count, p = previous count}
-- ARGV     limit, window (us), cost
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > limit
local now = now_us()
local limit, window, cost = limit_args()
if cost > limit then
  return CANNOT_PASS
end

local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local start = tonumber(state[1])
local cur = tonumber(state[2]) or 0
local prev = tonumber(state[3]) or 0
if start == nil then
  start = now
  cur = 0
  prev = 0
elseif now >= start + window then
  local passed = math.floor((now - start) / window)
  if passed == 1 then prev = cur else prev = 0 end
  cur = 0
  start = start + passed * window
end
-- A clock that went backwards counts as the start of the current window.
local elapsed = math.max(now - start, 0)
local weight = (window - elapsed) / window
local estimate = prev * weight + cur

-- Time from now until the estimate has fallen to `target` or below.
local function wait_until_at_most(target)
  if prev * weight + cur <= target then return 0 end
  if cur <= target then
    -- within this window: prev * (window - e) / window + cur <= target
    local e = window * (1 - (target - cur) / prev)
    return math.max(math.ceil(e - elapsed), 1)
  end
  -- next window, where `cur` becomes the previous count
  local e = window * (1 - target / cur)
  return math.max(math.ceil(window - elapsed + e), 1)
end

if estimate + cost <= limit then
  cur = cur + cost
  redis.call('HSET', KEYS[1], 'w', string.format('%d', start), 'c', cur, 'p', prev)
  -- The current count matters until the end of the next window.
  redis.call('PEXPIRE', KEYS[1], math.ceil((start + 2 * window - now) / 1000))
  weight = (window - elapsed) / window
  local after = prev * weight + cur
  return {1, math.max(math.floor(limit - after), 0), 0, wait_until_at_most(0)}
end
-- Denied: a window made longer since the last admit must not be cut short by that admit's TTL.
local reset = wait_until_at_most(0)
redis.call('PEXPIRE', KEYS[1], math.max(math.ceil(reset / 1000), 1), 'GT')
return {0, math.max(math.floor(limit - estimate), 0), wait_until_at_most(limit - cost), reset}
