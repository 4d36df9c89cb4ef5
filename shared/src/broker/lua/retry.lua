-- Retries one held message, in one atomic step: pushes the message that runs the task again,
-- stores (and PUBLISHes) its RETRY result, and acknowledges the delivery that asked for it.
-- So at every instant exactly one of the two messages is queued or held: a worker that dies
-- before the step still holds the old one (it comes back and runs again), one that dies after
-- it has handed over to the new one.
--
-- KEYS[1] unacked   KEYS[2] unacked_index   KEYS[3] inflight hash of the holder
-- KEYS[4] the list to push onto   KEYS[5] the result key (celery-task-meta-<task id>)
-- ARGV[1] delivery tag   ARGV[2] the new message   ARGV[3] the RETRY result JSON ('' for none)
-- ARGV[4] result expiry, seconds
-- The new message goes to the back of the list (LPUSH), as Celery publishes it. A stored
-- SUCCESS is never overwritten (Celery's rule).
-- Returns 1 when retried. Returns 0, and changes nothing but the holder's record, when the
-- holder no longer has the delivery (its lease ran out and another worker took it back) or a
-- kombu worker has restored it already: the old message is queued again, so pushing the new
-- one would run the task twice.
expect(KEYS[1], 'hash'); expect(KEYS[2], 'zset'); expect(KEYS[3], 'hash')
expect(KEYS[4], 'list')
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[4], ARGV[2])
if ARGV[3] ~= '' then
  if not stored_success(redis.call('GET', KEYS[5])) then
    redis.call('SETEX', KEYS[5], ARGV[4], ARGV[3])
    redis.call('PUBLISH', KEYS[5], ARGV[3])
  end
end
return 1
