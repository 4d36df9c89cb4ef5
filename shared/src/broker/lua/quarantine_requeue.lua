-- Puts a quarantined message back on its list, at the end workers take from (served next),
-- and removes its entry, in one step: two requeues of the same entry, however close, requeue
-- it once (the second finds no entry).
--
-- KEYS[1] the quarantine list   KEYS[2] the list the entry's message came from
-- ARGV[1] the entry's id (SHA-1 of the stored entry)
-- Returns 1 when requeued; 0 when no entry has that id; -1 when the entry has the id but is not
-- a readable record of a message from KEYS[2] (left where it is).
expect(KEYS[1], 'list'); expect(KEYS[2], 'list')
if redis.call('TYPE', KEYS[1]).ok ~= 'list' then return 0 end
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.sha1hex(entry) == ARGV[1] then
    local ok, record = pcall(cjson.decode, entry)
    if not ok or type(record) ~= 'table' or record.list ~= KEYS[2]
        or type(record.message) ~= 'string' then
      return -1
    end
    redis.call('LREM', KEYS[1], 1, entry)
    redis.call('RPUSH', KEYS[2], record.message)
    return 1
  end
end
return 0
