-- Renews a consumer's lease: while it runs, the consumer's held messages are its own.
-- Deadlines use Redis's clock, so consumers on machines with skewed clocks agree.
-- With KEYS[2] and KEYS[3], it also refreshes the unacked_index score of every message the
-- consumer holds (ZADD XX: only entries still there), so that a kombu worker's restore_visible,
-- which returns any entry scored earlier than its visibility timeout, leaves alone what a live
-- consumer still works on (a long task, a far eta).
--
-- KEYS[1] consumers (zset)   ARGV[1] consumer id   ARGV[2] lease length, ms
-- KEYS[2] (optional) inflight hash of the consumer   KEYS[3] unacked_index (zset)
-- ARGV[3] (with KEYS[2]) now, whole unix seconds (the score fetch.lua writes)
-- Returns the new deadline, ms.
expect(KEYS[1], 'zset')
if KEYS[2] then expect(KEYS[2], 'hash'); expect(KEYS[3], 'zset') end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
if KEYS[2] then
  local tags = redis.call('HKEYS', KEYS[2])
  -- unpack puts every argument on Lua's C stack, which has room for a few thousand.
  for from = 1, #tags, 500 do
    local args = {}
    for k = from, math.min(from + 499, #tags) do
      args[#args + 1] = ARGV[3]
      args[#args + 1] = tags[k]
    end
    redis.call('ZADD', KEYS[3], 'XX', unpack(args))
  end
end
return deadline
