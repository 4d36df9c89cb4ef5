-- Takes one held message away from its holder and pushes it onto a list: back onto its queue
-- (requeue on request, recovery of a dead consumer) or into quarantine.
--
-- KEYS[1] unacked   KEYS[2] unacked_index   KEYS[3] inflight hash of the holder
-- KEYS[4] destination list
-- ARGV[1] delivery tag   ARGV[2] 'front' (RPUSH: served next) or 'back' (LPUSH: served last)
-- ARGV[3] what to push
-- Returns 1 when moved. Returns 0 when the holder no longer has it, or when a kombu worker has
-- already restored it (then only the holder's record is cleared): never pushes a second copy.
expect(KEYS[1], 'hash'); expect(KEYS[2], 'zset'); expect(KEYS[3], 'hash')
expect(KEYS[4], 'list')
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] == 'front' then
  redis.call('RPUSH', KEYS[4], ARGV[3])
else
  redis.call('LPUSH', KEYS[4], ARGV[3])
end
return 1
