-- Takes up to ARGV[1] messages from the source lists, highest priority first, and records each
-- as delivered in the same atomic step, so a consumer that dies at any instant loses nothing:
-- a message is either still on its list or recorded in unacked/unacked_index (kombu's records,
-- so Python workers can restore it) and in this consumer's inflight hash (so ours can, in seconds).
-- Messages that cannot be recorded (over the size limit, not JSON, no delivery tag) go to the
-- quarantine list with the reason instead.
--
-- KEYS[1] unacked (hash)      KEYS[2] unacked_index (zset)    KEYS[3] inflight hash of this consumer
-- KEYS[4] quarantine (list)   KEYS[5] consumers (zset)         KEYS[6..] source lists, in serving order
-- ARGV[1] most messages to take     ARGV[2] now, unix seconds (the unacked_index score)
-- ARGV[3] largest message, bytes    ARGV[4] consumer id      ARGV[5] now, ISO 8601 (quarantine record)
-- ARGV[6] lease length, ms: a consumer that takes messages is always in the lease table, so what
--         it holds can always be recovered
-- ARGV[7..] the routing key (queue name) of each source list, for messages without delivery_info
-- Returns {taken, quarantined}: taken is flat {source number (1-based), delivery tag, message, ...};
-- quarantined holds the reasons of the messages moved to quarantine.
local max, limit = tonumber(ARGV[1]), tonumber(ARGV[3])
local taken, quarantined = {}, {}
local handled = 0

local function quarantine(list, msg, reason)
  redis.call('LPUSH', KEYS[4], cjson.encode({
    reason = reason, list = list, consumer = ARGV[4], quarantined_at = ARGV[5], message = msg }))
  quarantined[#quarantined + 1] = reason
end

for i = 6, #KEYS do
  while handled < max do
    local msg = redis.call('RPOP', KEYS[i])
    if not msg then break end
    handled = handled + 1
    if #msg > limit then
      quarantine(KEYS[i], msg, 'message of ' .. #msg .. ' bytes is over the limit of ' .. limit .. ' bytes')
    else
      local ok, m = pcall(cjson.decode, msg)
      local props = ok and type(m) == 'table' and m.properties
      local tag = type(props) == 'table' and props.delivery_tag
      if not ok then
        quarantine(KEYS[i], msg, 'message is not JSON: ' .. tostring(m))
      elseif type(m) ~= 'table' then
        quarantine(KEYS[i], msg, 'message is not a JSON object')
      elseif type(tag) ~= 'string' or tag == '' then
        quarantine(KEYS[i], msg, 'missing required field properties.delivery_tag')
      else
        local exchange, routing_key = '', ARGV[i + 1]
        local info = props.delivery_info
        if type(info) == 'table' then
          if type(info.exchange) == 'string' then exchange = info.exchange end
          if type(info.routing_key) == 'string' then routing_key = info.routing_key end
        end
        redis.call('HSET', KEYS[1], tag,
          '[' .. msg .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(routing_key) .. ']')
        redis.call('ZADD', KEYS[2], ARGV[2], tag)
        redis.call('HSET', KEYS[3], tag, KEYS[i])
        taken[#taken + 1] = i - 5
        taken[#taken + 1] = tag
        taken[#taken + 1] = msg
      end
    end
  end
end
if #taken > 0 then
  local t = redis.call('TIME')
  local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
  redis.call('ZADD', KEYS[5], 'NX', deadline, ARGV[4])
end
return {taken, quarantined}
