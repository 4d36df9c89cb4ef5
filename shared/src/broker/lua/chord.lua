-- One part of a chord's header has finished: count it exactly as Celery's Redis result backend
-- does (RedisBackend.on_chord_part_return, result_chord_ordered) and, if it is the last part,
-- take the header's results, all in one atomic step. Python workers count the same keys in a
-- MULTI of ZADD, ZCOUNT, GET, GET, so whichever worker, Python or ours, adds the last part is
-- the only one that sees the header complete.
--
-- KEYS[1] <group key>.j (sorted set of part records)  KEYS[2] <group key>.t (size adjustment)
-- KEYS[3] <group key>.s (chord size, set by the client)  KEYS[4] <group key> (a saved GroupResult)
--   where <group key> is celery-taskset-meta-<group id>
-- ARGV[1] this part's record, JSON [1, task id, state, result] as Python writes it
-- ARGV[2] its score: the part's group_index, or '+inf' without one
-- ARGV[3] expiry of the three keys, seconds (0: none)
-- Returns {code, records, reason}:
--   {0} parts are missing, or the chord's size is not recorded (Celery then does nothing either);
--   {1, records} this part completed the header: its records in header order. The keys are
--     deleted in the same step, so a part delivered twice cannot complete the chord again;
--   {2, {}, reason} the size or adjustment is not a number (the body cannot be sent);
--   {3} the header was saved as a GroupResult: it holds groups, which Celery joins and we do not.
expect(KEYS[1], 'zset')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ready = redis.call('ZCARD', KEYS[1])
local diff = redis.call('GET', KEYS[2])
local size = redis.call('GET', KEYS[3])
if tonumber(ARGV[3]) > 0 then
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
if not size then return {0, {}, ''} end
local total, extra = tonumber(size), tonumber(diff or '0')
if not total or not extra then
  return {2, {}, 'chord size ' .. size .. ' (adjustment ' .. tostring(diff) .. ') is not a number'}
end
if ready ~= total + extra then return {0, {}, ''} end
local complex = redis.call('EXISTS', KEYS[4])
local records = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if complex == 1 then return {3, {}, ''} end
return {1, records, ''}
