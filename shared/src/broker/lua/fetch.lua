-- Takes up to ARGV[1] messages from the source lists, highest priority first, and records each
-- as delivered in the same atomic step, so a consumer that dies at any instant loses nothing:
-- a message is either still on its list or recorded in unacked/unacked_index (kombu's records,
-- so Python workers can restore it) and in this consumer's inflight hash (so ours can, in seconds).
-- Messages that cannot be recorded (over the size limit; else, when no plainly written ASCII tag
-- can be read, not UTF-8, not JSON or no delivery tag) go to the quarantine list with the reason
-- instead. A message whose tag reads plainly is taken without being checked further: the worker
-- decodes it anyway, and quarantines it if it is not UTF-8 or not a message (executor.rs).
--
-- KEYS[1] unacked (hash)      KEYS[2] unacked_index (zset)    KEYS[3] inflight hash of this consumer
-- KEYS[4] quarantine (list)   KEYS[5] consumers (zset)         KEYS[6..] source lists, in serving order
-- ARGV[1] most messages to take     ARGV[2] now, whole unix seconds (the unacked_index score)
-- ARGV[3] largest message, bytes    ARGV[4] consumer id      ARGV[5] now, ISO 8601 (quarantine record)
-- ARGV[6] lease length, ms: a consumer that takes messages is always in the lease table, so what
--         it holds can always be recovered
-- ARGV[7..6 + #sources] the routing key (queue name) of each source list, for messages without
--         delivery_info
-- ARGV[7 + #sources..] (optional) health task names. When given, a list's message is taken only
--         while the one at its consuming end (its tail, LINDEX -1) is a task of one of these names,
--         and is recorded as any other: the reserved health slots use this to take a ping without
--         taking a business task when the worker's other slots are all busy (worker::lane).
-- Needs Redis 6.2 or later (RPOP with a count, ZMSCORE).
-- Returns {taken, quarantined}: taken is flat {source number (1-based), delivery tag, message, ...};
-- quarantined holds the reasons of the messages moved to quarantine.
expect(KEYS[1], 'hash'); expect(KEYS[2], 'zset'); expect(KEYS[3], 'hash')
expect(KEYS[4], 'list'); expect(KEYS[5], 'zset')
for i = 6, #KEYS do expect(KEYS[i], 'list') end
local max, limit = tonumber(ARGV[1]), tonumber(ARGV[3])
local taken, quarantined = {}, {}
local handled = 0

-- Redis strings are bytes, but whoever reads a quarantine record (our workers, Python's json)
-- needs UTF-8 text, and cjson passes invalid bytes through. utf8_text(s) returns s and true when s is valid
-- UTF-8, else a copy in which each maximal invalid sequence is replaced by U+FFFD (as Rust's
-- from_utf8_lossy and Python's errors='replace' do) and false. ASCII, the usual case, costs one
-- scan (in C, see ascii); other text one table look-up per non-ASCII character (memoized in TOKENS).
local FFFD = '\239\191\189'

-- A token is a byte over 127 and the continuation bytes (128-191) after it: false if it is one
-- well-formed sequence (kept as it is), else its replacement.
local function lossy(token)
  local c, n = string.byte(token, 1), #token
  -- The length of the sequence c starts (0: it starts none) and the range of its second byte.
  local len, lo, hi = 0, 128, 191
  if c >= 194 and c <= 223 then len = 2
  elseif c >= 224 and c <= 239 then
    len = 3
    if c == 224 then lo = 160 elseif c == 237 then hi = 159 end
  elseif c >= 240 and c <= 244 then
    len = 4
    if c == 240 then lo = 144 elseif c == 244 then hi = 143 end
  end
  local second = string.byte(token, 2)
  if len == 0 or not second or second < lo or second > hi then
    return string.rep(FFFD, n) -- the first byte and each continuation byte alone are invalid
  end
  if n == len then return false end
  if n < len then return FFFD end -- a truncated sequence
  return string.sub(token, 1, len) .. string.rep(FFFD, n - len)
end

local TOKENS = setmetatable({}, { __index = function(t, token)
  local r = lossy(token)
  t[token] = r
  return r
end })

-- ascii(s): whether s has no byte over 127. string.byte pushes up to 4000 bytes onto the stack
-- and bit.bor folds them, both in C: many times faster per byte than any Lua pattern, and a
-- third faster than math.max (measured: 2.3 against 3.1 us for a 927-byte Celery message).
local byte, bor, min = string.byte, bit.bor, math.min
local function ascii(s)
  local n = #s
  for i = 1, n, 4000 do
    if bor(byte(s, i, min(i + 3999, n))) > 127 then return false end
  end
  return true
end

local function utf8_text(s)
  if ascii(s) then return s, true end
  local text = string.gsub(s, '[\128-\255][\128-\191]*', TOKENS)
  return text, text == s
end

-- JSON[s]: s as a JSON string, encoded once per distinct exchange or routing key in a call.
local JSON = setmetatable({}, { __index = function(t, k)
  local v = cjson.encode(k)
  t[k] = v
  return v
end })

local NOT_UTF8 = 'message is not valid UTF-8'

-- The record keeps the message as received; invalid UTF-8 is shown as U+FFFD (and said so).
local function quarantine(list, msg, reason)
  local text, valid = utf8_text(msg)
  if not valid then
    if reason ~= NOT_UTF8 then reason = reason .. '; not valid UTF-8 either' end
    reason = reason .. ' (invalid bytes shown as U+FFFD)'
  end
  redis.call('LPUSH', KEYS[4], cjson.encode({
    reason = reason, list = list, consumer = ARGV[4], quarantined_at = ARGV[5], message = text }))
  quarantined[#quarantined + 1] = reason
end

-- Kombu and our producers write properties.delivery_tag and properties.delivery_info as plain
-- strings in a fixed layout. When each of the two keys occurs once and reads that way, its value
-- is what the decoder would find, and costs a few searches instead of a full decode (measured:
-- 5.5 us of 19 per message). Anything else is decoded. The worker decodes every message again and
-- quarantines one whose properties.delivery_tag is not the tag given here (see executor.rs), so a
-- message that merely looks right here (not JSON, or the key elsewhere) still ends in quarantine.
local find, match = string.find, string.match
-- The position after `"key"` when `key"` occurs exactly once and follows a quote; nil when it
-- does not occur, false otherwise. (A plain find looks for the needle's first byte with memchr:
-- a letter is far rarer in a message than '"'.)
local function once(msg, key)
  local s, e = find(msg, key, 1, true)
  if not s then return nil end
  if s > 1 and byte(msg, s - 1) == 34 and not find(msg, key, e + 1, true) then
    return e + 1
  end
  return false
end
local function quick(msg, list_key)
  local at = once(msg, 'delivery_tag"')
  local tag = at and match(msg, '^%s*:%s*"([^"\\\128-\255]+)"', at)
  if not tag then return nil end
  at = once(msg, 'delivery_info"')
  if at == nil then return tag, '', list_key end
  if not at then return nil end
  local exchange, routing_key =
    match(msg, '^%s*:%s*{%s*"exchange"%s*:%s*"([^"\\\128-\255]*)"%s*,%s*"routing_key"%s*:%s*"([^"\\\128-\255]*)"%s*}', at)
  if exchange then return tag, exchange, routing_key end
end

-- The decoder's reading: the tag, exchange and routing key, or nil and the quarantine reason.
local function decoded(msg, list_key)
  local ok, m = pcall(cjson.decode, msg)
  if not ok then return nil, 'message is not JSON: ' .. tostring(m) end
  if type(m) ~= 'table' then return nil, 'message is not a JSON object' end
  local props = m.properties
  local tag = type(props) == 'table' and props.delivery_tag
  if type(tag) ~= 'string' or tag == '' then
    return nil, 'missing required field properties.delivery_tag'
  end
  local exchange, routing_key = '', list_key
  local info = props.delivery_info
  if type(info) == 'table' then
    if type(info.exchange) == 'string' then exchange = info.exchange end
    if type(info.routing_key) == 'string' then routing_key = info.routing_key end
  end
  return tag, exchange, routing_key
end

-- What one call records, written with one command per key at the end (a command costs about
-- 1 us of script overhead whatever its size).
local records, scores, holders = {}, {}, {}
local function flush()
  if #records == 0 then return end
  redis.call('HSET', KEYS[1], unpack(records))
  redis.call('ZADD', KEYS[2], unpack(scores))
  redis.call('HSET', KEYS[3], unpack(holders))
  records, scores, holders = {}, {}, {}
end

-- First what each popped message is: quarantined now, or a candidate to record (in parallel
-- arrays: a table per message costs more).
local c_list, c_tag, c_exchange, c_routing_key, c_msg = {}, {}, {}, {}, {}
local function consider(i, msg)
  handled = handled + 1
  if #msg > limit then
    quarantine(KEYS[i], msg, 'message of ' .. #msg .. ' bytes is over the limit of ' .. limit .. ' bytes')
    return
  end
  local tag, exchange, routing_key = quick(msg, ARGV[i + 1])
  if tag then
    -- Taken unchecked: the worker quarantines it if it is not UTF-8 (the tag is ASCII, so
    -- the worker can name it to settle it).
  elseif not select(2, utf8_text(msg)) then
    quarantine(KEYS[i], msg, NOT_UTF8)
  else
    tag, exchange, routing_key = decoded(msg, ARGV[i + 1])
    if not tag then
      quarantine(KEYS[i], msg, exchange) -- the decoder's second value is then the reason
    end
  end
  if tag then
    local n = #c_tag + 1
    c_list[n], c_tag[n], c_exchange[n], c_routing_key[n], c_msg[n] = i, tag, exchange, routing_key, msg
  end
end

-- Health names, if any: whether msg is a task of one of them. A plain search for the quoted name
-- first (memchr, a few hundred ns for a business task's message), then a decode to be sure it
-- is headers.task. A message too large or not a message is left for the main fetch to handle.
local health = {}
for k = #KEYS + 2, #ARGV do health[#health + 1] = ARGV[k] end
local function is_health(msg)
  if #msg > limit then return false end
  local task
  for _, name in ipairs(health) do
    if find(msg, '"' .. name .. '"', 1, true) then
      if task == nil then
        local ok, m = pcall(cjson.decode, msg)
        task = ok and type(m) == 'table' and type(m.headers) == 'table' and m.headers.task
      end
      if task == name then return true end
    end
  end
  return false
end

for i = 6, #KEYS do
  if handled >= max then break end
  if #health > 0 then
    while handled < max do
      local msg = redis.call('LINDEX', KEYS[i], -1)
      if not msg or not is_health(msg) then break end
      redis.call('RPOP', KEYS[i])
      consider(i, msg)
    end
  else
    -- RPOP with a count (Redis 6.2): the list's oldest messages, oldest first.
    local msgs = redis.call('RPOP', KEYS[i], max - handled)
    if msgs then
      for _, msg in ipairs(msgs) do consider(i, msg) end
    end
  end
end

-- A tag names one held message: records are keyed by it, and settling one message clears them.
-- A message whose tag is already held (by anyone: kombu writes unacked_index too) or taken
-- earlier in this call would share those records, and be dropped when the other is settled;
-- it goes to quarantine instead. Kombu's producers never reuse a tag.
local held = {}
for from = 1, #c_tag, 1000 do
  local found = redis.call('ZMSCORE', KEYS[2], unpack(c_tag, from, math.min(from + 999, #c_tag)))
  for k = 1, #found do held[from + k - 1] = found[k] end
end
local seen = {}
for k = 1, #c_tag do
  local i, tag, msg = c_list[k], c_tag[k], c_msg[k]
  if held[k] or seen[tag] then
    quarantine(KEYS[i], msg, 'delivery tag ' .. tag .. ' is already held by another message')
  else
    seen[tag] = true
    local n = #records
    records[n + 1] = tag
    records[n + 2] = '[' .. msg .. ', ' .. JSON[c_exchange[k]] .. ', ' .. JSON[c_routing_key[k]] .. ']'
    scores[n + 1] = ARGV[2]
    scores[n + 2] = tag
    holders[n + 1] = tag
    holders[n + 2] = KEYS[i]
    -- unpack puts every argument on Lua's C stack, which has room for a few thousand.
    if n >= 1000 then flush() end
    taken[#taken + 1] = i - 5
    taken[#taken + 1] = tag
    taken[#taken + 1] = msg
  end
end
flush()
if #taken > 0 then
  local t = redis.call('TIME')
  local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
  redis.call('ZADD', KEYS[5], 'NX', deadline, ARGV[4])
end
return {taken, quarantined}
