-- Parks a held message whose eta is far: it leaves the holder's records (so no lease keeps it
-- and no worker keeps it in memory) but stays in kombu's unacked/unacked_index, scored so that
-- a kombu worker's restore_visible returns it when it is due back, and is listed in the parked
-- set for our workers' recoverers (worker::parking).
--
-- KEYS[1] unacked (hash)   KEYS[2] unacked_index (zset)   KEYS[3] inflight hash of the holder
-- KEYS[4] parked (zset)
-- ARGV[1] delivery tag   ARGV[2] its source list   ARGV[3] when it is due back, unix ms
-- ARGV[4] its unacked_index score while parked (due back, whole seconds, minus the shortest
--         kombu visibility timeout)
-- Returns 1 when parked, 0 when the holder no longer held it (nothing changed then).
expect(KEYS[1], 'hash'); expect(KEYS[2], 'zset'); expect(KEYS[3], 'hash')
expect(KEYS[4], 'zset')
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], cjson.encode({ ARGV[1], ARGV[2], ARGV[4] }))
return 1
