-- Lists the consumers whose lease has run out, by Redis's clock.
--
-- KEYS[1] consumers (zset)
-- Returns the consumer ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
