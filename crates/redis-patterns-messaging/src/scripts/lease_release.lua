-- Ends a lease, only while the caller's token still owns the key.
-- KEYS[1] the key; ARGV[1] the lease value ("lease:<token>");
-- ARGV[2] done-marker ms to mark the id done, or "" to delete the lease (abandon).
-- Returns 1 when the caller owned the lease, 0 when it had expired or another attempt holds it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
end
return 1
