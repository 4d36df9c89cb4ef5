-- One sample of the queues for the monitor, read-only, in one call so that every figure is
-- of the same instant. Its cost does not grow with the number of waiting messages: a list is
-- read at its two ends and at a few indices given by the caller (LINDEX walks from the nearer
-- end), and LPOS scans only the messages pushed since the previous sample.
--
-- KEYS[1] unacked   KEYS[2] rcelery:parked   KEYS[3] rcelery:quarantine
-- KEYS[4] rcelery:quarantine:dropped   KEYS[5..] the queue lists sampled
-- ARGV[1] the most messages LPOS looks at   ARGV[2] the largest head returned whole (bytes)
-- then, for each list in KEYS order: the previous sample's head ('' for none), the number n
-- of marks to check, and n pairs (the mark's index from the head at the previous sample,
-- the SHA-1 of its message), oldest mark first.
--
-- Returns {unacked, parked, quarantined, dropped, {len, head sha1, head or false, pushed,
-- present}...}, one table per list, where `pushed` is how many messages were LPUSHed since
-- the previous head (its index now), -1 when no previous head was given, -2 when it is gone
-- (consumed: the whole list was scanned), -3 when it was not within ARGV[1] messages; and
-- `present` is the 1-based number of the first mark found at its expected index (0: none).
local cap = tonumber(ARGV[1])
local max_head = tonumber(ARGV[2])

local function count(key, kind, command)
  local found = redis.call('TYPE', key).ok
  if found ~= kind then return 0 end
  return redis.call(command, key)
end

local out = {
  count(KEYS[1], 'hash', 'HLEN'),
  count(KEYS[2], 'zset', 'ZCARD'),
  count(KEYS[3], 'list', 'LLEN'),
  tonumber(redis.call('TYPE', KEYS[4]).ok == 'string' and redis.call('GET', KEYS[4]) or 0) or 0,
}

local a = 3
for k = 5, #KEYS do
  local list = KEYS[k]
  local previous = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  local marks = a + 2
  a = marks + 2 * n
  local len = 0
  if redis.call('TYPE', list).ok == 'list' then len = redis.call('LLEN', list) end
  if len == 0 then
    out[#out + 1] = {0, false, false, -1, 0}
  else
    local head = redis.call('LINDEX', list, 0)
    local pushed = -1
    if previous ~= '' then
      local at = redis.call('LPOS', list, previous, 'MAXLEN', cap)
      if at then
        pushed = at
      elseif len <= cap then
        pushed = -2
      else
        pushed = -3
      end
    end
    local present = 0
    if pushed >= 0 then
      for i = 1, n do
        local index = tonumber(ARGV[marks + 2 * (i - 1)]) + pushed
        if index < len then
          local message = redis.call('LINDEX', list, index)
          if message and redis.sha1hex(message) == ARGV[marks + 2 * (i - 1) + 1] then
            present = i
            break
          end
        end
      end
    end
    local whole = false
    if #head <= max_head then whole = head end
    out[#out + 1] = {len, redis.sha1hex(head), whole, pushed, present}
  end
end
return out
