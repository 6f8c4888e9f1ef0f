-- Takes the in-progress lease on an idempotency key, or says why not.
-- KEYS[1] the key; ARGV[1] this attempt's lease value ("lease:<token>"); ARGV[2] lease ms.
-- Returns {1, 0} taken; {0, pttl} another attempt holds a live lease; {2, pttl} done.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0}
end
local value = redis.call('GET', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
if string.sub(value, 1, 6) == 'lease:' then
  return {0, pttl}
end
return {2, pttl}
