-- Fills an entry after a load, unless a write happened since the load began.
-- KEYS[1] entry, KEYS[2] generation, KEYS[3] refresh lease
-- ARGV[1] generation read before the load ('' = none), ARGV[2] envelope ('' = delete the entry:
-- the load found nothing and negative caching is off, or its value could not be encoded),
-- ARGV[3] PX of the entry, ARGV[4] lease token ('' = no lease held)
-- Returns 1 when stored (or deleted), 0 when a newer write fenced the fill off.
local gen = redis.call('GET', KEYS[2]) or ''
local stored = 0
if gen == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  stored = 1
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return stored
