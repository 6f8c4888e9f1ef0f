-- GCRA (generic cell rate algorithm): one value per key, the theoretical arrival time (TAT).
-- `rate` units per `period` on average, up to `burst` at once.
-- key  string: TAT (us), TTL = until the TAT
-- Units of `emission` us that fit in `d` us; a quotient a hair under a whole number counts as
-- that number.
local function gcra_units(d, emission)
  return math.max(math.floor(d / emission + 1e-6), 0)
end

local function gcra(key, _, burst, period, cost, rate, clock)
  if cost > burst then
    return CANNOT_PASS
  end
  local now = clock()
  local emission = period / rate
  local tolerance = emission * burst
  -- Work relative to now: sums of absolute timestamps (about 2^51 us) round to a quarter
  -- microsecond, enough to report one unit fewer than remain when the interval is not a whole
  -- number of microseconds (7 per second).
  local tat = tonumber(redis.call('GET', key)) or now
  local ahead = math.max(tat - now, 0)
  local new_ahead = ahead + emission * cost
  local diff = tolerance - new_ahead
  if diff < 0 then
    return {0, gcra_units(tolerance - ahead, emission), math.max(math.ceil(-diff), 1), math.ceil(ahead)}
  end
  return {1, gcra_units(diff, emission), 0, math.ceil(new_ahead)}, function()
    redis.call('SET', key, string.format('%.17g', now + new_ahead), 'PX',
      math.max(math.ceil(new_ahead / 1000), 1))
  end
end
LIMIT = gcra
