-- Fixed window: at most `limit` units per window; a window opens at the first admitted unit and
-- lasts as long as its key, whose TTL is the window rounded up to whole milliseconds.
-- key  string: units admitted in the current window (an integer), TTL = the rest of the window
-- Reads no clock: the key's expiry is the window (GET, then SET ... PX, or PTTL and INCRBY).
local function fixed_window(key, _, limit, window, cost)
  if cost > limit then
    return CANNOT_PASS
  end
  local window_ms = math.ceil(window / 1000)
  local used = tonumber(redis.call('GET', key))
  if used == nil then
    return {1, limit - cost, 0, window_ms * 1000}, function()
      redis.call('SET', key, cost, 'PX', window_ms)
    end
  end
  local ttl = redis.call('PTTL', key)
  local repair = nil
  if ttl < 0 then
    -- A counter without a TTL (written by hand): its window starts now.
    ttl = window_ms
    repair = function()
      redis.call('PEXPIRE', key, window_ms)
    end
  end
  local reset = math.max(ttl * 1000, 1)
  if used + cost <= limit then
    return {1, limit - used - cost, 0, reset}, function()
      redis.call('INCRBY', key, cost)
      if repair then repair() end
    end
  end
  return {0, math.max(limit - used, 0), reset, reset}, repair
end
LIMIT = fixed_window
