-- A remote control reply, routed as kombu routes a message through a direct exchange on
-- Redis: to every list bound to the reply exchange under the reply's routing key.
--
-- KEYS[1] the reply exchange's binding set (`_kombu.binding.reply.celery.pidbox`), whose
--         members are `routing key \x06\x16 pattern \x06\x16 list`
-- ARGV[1] the routing key (the client's reply id)
-- ARGV[2] the reply envelope
-- ARGV[3] seconds the list is kept if its client never reads it
-- Returns how many lists it was pushed onto: 0 when the client is gone (no binding), where
-- kombu would push onto its dead-letter list instead.
expect(KEYS[1], 'set')
local sep = '\6\22'
local pushed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local first = string.find(member, sep, 1, true)
  if first and string.sub(member, 1, first - 1) == ARGV[1] then
    local second = string.find(member, sep, first + 2, true)
    if second then
      local list = string.sub(member, second + 2)
      if list ~= '' then
        redis.call('LPUSH', list, ARGV[2])
        redis.call('EXPIRE', list, tonumber(ARGV[3]))
        pushed = pushed + 1
      end
    end
  end
end
return pushed
