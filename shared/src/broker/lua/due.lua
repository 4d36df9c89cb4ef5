-- Lists parked messages due back, by Redis's clock (so workers with skewed clocks agree).
--
-- KEYS[1] parked (zset)   ARGV[1] most entries to list
-- Returns the entries, each the JSON [delivery tag, source list, unacked_index score].
expect(KEYS[1], 'zset')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now), 'LIMIT', 0, tonumber(ARGV[1]))
