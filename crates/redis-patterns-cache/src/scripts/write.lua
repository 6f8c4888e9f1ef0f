-- A write (set, delete, write-through): bumps the generation, frees the refresh lease, then
-- stores or deletes the entry.
-- A fill that read the old generation is refused by store.lua afterwards; the load behind it may
-- have read the source before this write, so its lease is dropped and the next reader need not
-- wait for it. (store.lua releases a lease only while it still holds its own token.)
-- KEYS[1] entry, KEYS[2] generation, KEYS[3] refresh lease
-- ARGV[1] new generation token, ARGV[2] PX of the generation,
-- ARGV[3] 'set' or 'del', ARGV[4] envelope, ARGV[5] PX of the entry
-- Returns 1 when an entry was stored or deleted, 0 when there was nothing to delete.
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
if ARGV[3] == 'del' then
  return redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
return 1
