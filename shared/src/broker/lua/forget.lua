-- Removes a consumer from the lease table once it holds nothing.
--
-- KEYS[1] consumers (zset)   KEYS[2] inflight hash of the consumer
-- ARGV[1] consumer id        ARGV[2] '1' to remove it even if its lease is still running
--                            (its own clean exit), '0' only if it ran out (recovery)
-- Returns 1 when removed, 0 when it still holds messages or came back to life.
expect(KEYS[1], 'zset'); expect(KEYS[2], 'hash')
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 1 end
if ARGV[2] ~= '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(score) >= now then return 0 end
end
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
