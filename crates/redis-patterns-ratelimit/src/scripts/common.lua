-- Shared by the rate limit scripts, after SERVER_CLOCK. Each algorithm file defines one function
--   algorithm(key, key2, capacity, period_us, cost, rate, clock)
--     -> {code, remaining, retry_after_us, reset_after_us}, commit
-- that decides a check by reading only (`clock()` gives the server's time in us; only the
-- algorithms that need it call it). `commit`, when not nil, writes the decision: what an
-- admission took, or the longer TTL a denial needs. It ends by naming itself LIMIT, the
-- algorithm that a single-limit script (`single.lua`) runs.
local LIMIT

-- The reply to a cost above the capacity: it can never pass, and nothing is written.
local CANNOT_PASS = {-1, 0, 0, 0}
