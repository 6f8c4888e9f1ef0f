-- Shared by the rate limit scripts, after SERVER_CLOCK: the limit sent with every call.
-- ARGV  capacity (limit per window, bucket capacity or burst), period (us), cost, rate per period
local function limit_args()
  return tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
end

-- The reply to a cost above the capacity: it can never pass, and nothing is written.
local CANNOT_PASS = {-1, 0, 0, 0}

