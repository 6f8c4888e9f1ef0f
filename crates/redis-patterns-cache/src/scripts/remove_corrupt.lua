-- Deletes an entry only if it still holds the bytes that failed to decode, so a good value
-- written in the meantime survives.
-- KEYS[1] entry, ARGV[1] the undecodable bytes. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
