-- Server clock (redis_core::script::SERVER_CLOCK), prepended to every script that reads the time.
-- Scripts read TIME, never the caller's clock; Redis 7 replicates a script's effects, so replicas
-- see the values it wrote, not a second reading of the clock.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

