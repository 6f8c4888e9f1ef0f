-- Appends entries to a stream, trimming entries older than a maximum age by the server's clock.
-- KEYS[1]  the stream
-- ARGV[1]  maximum age in milliseconds
-- ARGV[2..] payloads, one entry each (field "p")
-- Returns the new entry ids, in order.
local minid = now_ms() - tonumber(ARGV[1])
if minid < 0 then minid = 0 end
minid = string.format('%.0f', minid)
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'p', ARGV[i])
end
return ids
