-- Keeps the quarantine list to its newest ARGV[1] entries and counts what is dropped, so a
-- flood of bad messages costs bounded memory and still leaves a trace.
--
-- KEYS[1] the quarantine list (newest first)   KEYS[2] the counter of dropped entries
-- ARGV[1] the most entries kept (at least 1)
-- Returns how many entries were dropped now.
local cap = tonumber(ARGV[1])
if not cap or cap < 1 then cap = 1 end
if redis.call('TYPE', KEYS[1]).ok ~= 'list' then return 0 end
local n = redis.call('LLEN', KEYS[1])
if n <= cap then return 0 end
redis.call('LTRIM', KEYS[1], 0, cap - 1)
redis.call('INCRBY', KEYS[2], n - cap)
return n - cap
