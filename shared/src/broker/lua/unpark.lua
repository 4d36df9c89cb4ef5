-- Puts one parked message back at the front of its list, once, however many workers try.
-- If a kombu worker restored it meanwhile (its unacked record is gone, or was written anew by
-- whoever took it since: another score), only the parked entry is dropped.
--
-- KEYS[1] parked (zset)   KEYS[2] unacked (hash)   KEYS[3] unacked_index (zset)
-- KEYS[4] the list it goes back to
-- ARGV[1] the parked entry   ARGV[2] delivery tag   ARGV[3] its unacked_index score when parked
-- ARGV[4] the message (read from its unacked record)
-- Returns 1 when moved, 0 otherwise.
expect(KEYS[1], 'zset'); expect(KEYS[2], 'hash'); expect(KEYS[3], 'zset')
expect(KEYS[4], 'list')
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local score = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not score or tonumber(score) ~= tonumber(ARGV[3]) then return 0 end
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[4])
return 1
