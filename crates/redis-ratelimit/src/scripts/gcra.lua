-- GCRA (generic cell rate algorithm): one value per key, the theoretical arrival time (TAT).
-- `rate` units per `period` on average, up to `burst` at once.
-- KEYS[1]  string: TAT (us)
-- ARGV     burst, period (us), cost, rate
-- Returns  {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
if cost > burst then
  return {-1, 0, 0, 0}
end

local emission = period / rate
local tolerance = emission * burst
local tat = tonumber(redis.call('GET', KEYS[1])) or now
tat = math.max(tat, now)
local new_tat = tat + emission * cost
local diff = now - (new_tat - tolerance)

if diff < 0 then
  local remaining = math.max(math.floor((now - (tat - tolerance)) / emission), 0)
  return {0, remaining, math.max(math.ceil(-diff), 1), math.ceil(tat - now)}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', math.max(math.ceil(reset / 1000), 1))
return {1, math.floor(diff / emission), 0, math.ceil(reset)}
