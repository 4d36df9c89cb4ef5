-- Acknowledges delivered messages and stores task results, a batch in one atomic step.
--
-- KEYS[1] unacked   KEYS[2] unacked_index   KEYS[3] inflight hash of the consumer
-- KEYS[3 + j] the result key of entry j (celery-task-meta-<task id>)
-- ARGV[1] result expiry, seconds; then for each entry j:
--   ARGV[2j] delivery tag to acknowledge ('' for none), ARGV[2j + 1] result JSON ('' for none)
-- A stored SUCCESS is never overwritten (Celery's rule). A result is PUBLISHed on the channel
-- named like its key. A tag this consumer no longer holds (its lease ran out and the message was
-- recovered by another) is left alone: the other holder owns the records now.
-- Entries are applied in order; reads and deletions are made for the whole batch at once (a
-- command costs about 1 us of script overhead whatever its size), which gives the same outcome.
-- Returns the number of results stored.
expect(KEYS[1], 'hash'); expect(KEYS[2], 'zset'); expect(KEYS[3], 'hash')
local n = #KEYS - 3

-- Results: one MGET for the current values, then SETEX and PUBLISH for each one written.
local keys, at = {}, {}
for j = 1, n do
  if ARGV[2 * j + 1] ~= '' then
    keys[#keys + 1] = KEYS[3 + j]
    at[#keys] = j
  end
end
local stored = 0
if #keys > 0 then
  local current = redis.call('MGET', unpack(keys))
  -- A key written earlier in this batch counts as current for a later entry of the same task.
  local written = {}
  for k = 1, #keys do
    local key, payload = keys[k], ARGV[2 * at[k] + 1]
    if not stored_success(written[key] or current[k]) then
      redis.call('SETEX', key, ARGV[1], payload)
      redis.call('PUBLISH', key, payload)
      written[key] = payload
      stored = stored + 1
    end
  end
end

-- Acknowledgements: the tags this consumer still holds lose all their records.
local tags = {}
for j = 1, n do
  if ARGV[2 * j] ~= '' then tags[#tags + 1] = ARGV[2 * j] end
end
if #tags > 0 then
  local holders = redis.call('HMGET', KEYS[3], unpack(tags))
  local held = {}
  for k = 1, #tags do
    if holders[k] then held[#held + 1] = tags[k] end
  end
  if #held > 0 then
    redis.call('HDEL', KEYS[3], unpack(held))
    redis.call('HDEL', KEYS[1], unpack(held))
    redis.call('ZREM', KEYS[2], unpack(held))
  end
end
return stored
