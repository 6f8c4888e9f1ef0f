-- One check of one limit (the algorithm prepended as LIMIT).
-- KEYS  the identity's key (and the sliding log's `seq` companion)
-- ARGV  capacity, period (us), cost, rate per period
-- Returns {code, remaining, retry_after_us, reset_after_us}; code 1 allowed, 0 denied, -1 cost > capacity
local reply, commit = LIMIT(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), now_us)
if commit then
  commit()
end
return reply
