-- Many checks in one call (coalesced checks, several limits per identity), every algorithm
-- prepended. Each check is all or nothing over its limits: when one limit denies, none is
-- taken from the others, and only the denying limits may lengthen a TTL. Each limit is read
-- once, then written if the check passed. One clock reading per call.
-- KEYS  per check, per limit: its key (and the sliding log's `seq` companion); all on one slot
--       on a cluster
-- ARGV  number of checks; per check: number of limits, cost; per limit: algorithm (1 fixed
--       window, 2 sliding log, 3 sliding window, 4 token bucket, 5 GCRA), capacity, period (us), rate
-- Returns per check, per limit: code, remaining, retry_after_us, reset_after_us (flattened)
local ALGORITHMS = {fixed_window, sliding_log, sliding_window, token_bucket, gcra}
local now
local function clock()
  if now == nil then
    now = now_us()
  end
  return now
end

local out = {}
local a, k = 2, 1
for _ = 1, tonumber(ARGV[1]) do
  local n, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if n == 1 then
    -- One limit (a coalesced single-limit check): decide, write, reply.
    local code = tonumber(ARGV[a])
    local key, key2 = KEYS[k], nil
    k = k + 1
    if code == 2 then
      key2 = KEYS[k]
      k = k + 1
    end
    local r, commit = ALGORITHMS[code](key, key2, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
      cost, tonumber(ARGV[a + 3]), clock)
    a = a + 4
    if commit then
      commit()
    end
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r[1], r[2], r[3], r[4]
  else
    local replies, commits = {}, {}
    local pass = true
    for i = 1, n do
      local code = tonumber(ARGV[a])
      local key, key2 = KEYS[k], nil
      k = k + 1
      if code == 2 then
        key2 = KEYS[k]
        k = k + 1
      end
      replies[i], commits[i] = ALGORITHMS[code](key, key2, tonumber(ARGV[a + 1]),
        tonumber(ARGV[a + 2]), cost, tonumber(ARGV[a + 3]), clock)
      a = a + 4
      if replies[i][1] ~= 1 then
        pass = false
      end
    end
    -- All or nothing: every admission is written, or only the denials' TTLs.
    for i = 1, n do
      if commits[i] and (pass or replies[i][1] == 0) then
        commits[i]()
      end
      local r = replies[i]
      out[#out + 1] = r[1]
      out[#out + 1] = r[2]
      out[#out + 1] = r[3]
      out[#out + 1] = r[4]
    end
  end
end
return out
