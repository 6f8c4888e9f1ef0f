-- Counts a semaphore's unexpired permits, by the clock of the node that holds the key.
-- KEYS[1] holders (member = owner token, score = expiry in server ms)
-- Returns the number of permits whose expiry is after now.
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now_ms()), '+inf')
