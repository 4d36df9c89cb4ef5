-- Acknowledges delivered messages and stores task results, a batch in one atomic step.
--
-- KEYS[1] unacked   KEYS[2] unacked_index   KEYS[3] inflight hash of the consumer
-- KEYS[3 + j] the result key of entry j (celery-task-meta-<task id>)
-- ARGV[1] result expiry, seconds; then for each entry j:
--   ARGV[2j] delivery tag to acknowledge ('' for none), ARGV[2j + 1] result JSON ('' for none)
-- A stored SUCCESS is never overwritten (Celery's rule). A result is PUBLISHed on the channel
-- named like its key. A tag this consumer no longer holds (its lease ran out and the message was
-- recovered by another) is left alone: the other holder owns the records now.
-- Returns the number of results stored.
local stored = 0
for j = 1, #KEYS - 3 do
  local tag, payload, key = ARGV[2 * j], ARGV[2 * j + 1], KEYS[3 + j]
  if payload ~= '' then
    local current = redis.call('GET', key)
    local keep = false
    if current then
      local ok, meta = pcall(cjson.decode, current)
      keep = ok and type(meta) == 'table' and meta.status == 'SUCCESS'
    end
    if not keep then
      redis.call('SETEX', key, ARGV[1], payload)
      redis.call('PUBLISH', key, payload)
      stored = stored + 1
    end
  end
  if tag ~= '' and redis.call('HDEL', KEYS[3], tag) == 1 then
    redis.call('HDEL', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
  end
end
return stored
