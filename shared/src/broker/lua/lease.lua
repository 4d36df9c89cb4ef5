-- Renews a consumer's lease: while it runs, the consumer's held messages are its own.
-- Deadlines use Redis's clock, so consumers on machines with skewed clocks agree.
--
-- KEYS[1] consumers (zset)   ARGV[1] consumer id   ARGV[2] lease length, ms
-- Returns the new deadline, ms.
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
return deadline
