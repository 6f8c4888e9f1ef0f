-- Deletes a lock only if the caller still owns it, and tells waiters it is free.
-- KEYS[1] lock key, KEYS[2] waiters marker (a companion of KEYS[1])
-- ARGV[1] owner token, ARGV[2] the lock's release channel
-- Returns 2 when deleted and waiters were told (PUBLISH of KEYS[1] on ARGV[2]), 1 when deleted
-- with nobody waiting, 0 when the key is gone or owned by someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('DEL', KEYS[1], KEYS[2]) > 1 then
    redis.call('PUBLISH', ARGV[2], KEYS[1])
    return 2
  end
  return 1
end
return 0
