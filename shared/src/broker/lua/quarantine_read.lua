-- Reads the quarantine list without changing it: the newest entries, or the one entry with a
-- given id, each with its id (the SHA-1 of the stored entry, which Redis computes here so
-- that the id a reader sees is the one the requeue script looks for).
--
-- KEYS[1] the quarantine list (newest first)   KEYS[2] the counter of dropped entries
-- ARGV[1] how many entries, newest first (when ARGV[2] is empty)
-- ARGV[2] an entry id to find instead, or ''
-- Returns {length of the list, dropped count, {id, entry, id, entry, ...}}.
local kind = redis.call('TYPE', KEYS[1]).ok
local dropped = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if kind ~= 'list' then return {0, dropped, {}} end
local n = redis.call('LLEN', KEYS[1])
local found = {}
if ARGV[2] == '' then
  local want = tonumber(ARGV[1]) or 0
  if want > 0 then
    for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, want - 1)) do
      found[#found + 1] = redis.sha1hex(entry)
      found[#found + 1] = entry
    end
  end
else
  for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    if redis.sha1hex(entry) == ARGV[2] then
      found = {ARGV[2], entry}
      break
    end
  end
end
return {n, dropped, found}
