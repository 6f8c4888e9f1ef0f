-- Shared by the rate limit scripts, after SERVER_CLOCK. Each algorithm file defines one function
--   algorithm(key, key2, capacity, period_us, cost, rate, clock, write)
--     -> {code, remaining, retry_after_us, reset_after_us}
-- that decides a check (`clock()` gives the server's time in us; only the algorithms that need
-- it call it) and, when `write` is true, stores what it took or lengthens a TTL on a denial;
-- with `write` false it only reads. It ends by naming itself LIMIT, the algorithm that a
-- single-limit script (`single.lua`) runs.
local LIMIT

-- The reply to a cost above the capacity: it can never pass, and nothing is written.
local CANNOT_PASS = {-1, 0, 0, 0}
