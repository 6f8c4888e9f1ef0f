-- Sliding window counter: the previous window's count, weighted by how much of it still overlaps
-- the sliding window, plus the current window's count. O(1) memory, approximate.
-- key  string "<start> <cur> <prev>": current window start (us), its count, the previous count;
--      TTL = until the end of the next window
local function sliding_window(key, _, limit, window, cost, _, clock)
  if cost > limit then
    return CANNOT_PASS
  end
  local now = clock()
  local start, cur, prev
  local state = redis.call('GET', key)
  if state then
    local w, c, p = string.match(state, '^(%S+) (%S+) (%S+)$')
    start, cur, prev = tonumber(w), tonumber(c) or 0, tonumber(p) or 0
  end
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
  local function wait_until_at_most(c, target)
    if prev * weight + c <= target then return 0 end
    if c <= target then
      -- within this window: prev * (window - e) / window + c <= target
      local e = window * (1 - (target - c) / prev)
      return math.max(math.ceil(e - elapsed), 1)
    end
    -- next window, where `c` becomes the previous count
    local e = window * (1 - target / c)
    return math.max(math.ceil(window - elapsed + e), 1)
  end

  if estimate + cost <= limit then
    cur = cur + cost
    local after = prev * weight + cur
    return {1, math.max(math.floor(limit - after), 0), 0, wait_until_at_most(cur, 0)}, function()
      -- The current count matters until the end of the next window.
      redis.call('SET', key, string.format('%d %d %d', start, cur, prev), 'PX',
        math.ceil((start + 2 * window - now) / 1000))
    end
  end
  -- Denied: a window made longer since the last admit must not be cut short by that admit's TTL.
  local reset = wait_until_at_most(cur, 0)
  return {0, math.max(math.floor(limit - estimate), 0), wait_until_at_most(cur, limit - cost), reset},
    function()
      redis.call('PEXPIRE', key, math.max(math.ceil(reset / 1000), 1), 'GT')
    end
end
LIMIT = sliding_window
