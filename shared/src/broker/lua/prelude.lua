-- Prepended to every script that writes, with what more than one of them needs.
--
-- Redis does not roll a script back when a command in it fails, so a key of the wrong type met half-way (someone SET `unacked` by hand) would leave
-- a message popped and recorded nowhere. Each script first checks the type of every key it
-- writes; a wrong one fails the call before anything is written.
local function expect(key, kind)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and found ~= kind then
    error({err = 'WRONGTYPE ' .. key .. ' holds a ' .. found .. ' where a ' .. kind ..
      ' belongs; nothing was done'})
  end
end

-- Whether a stored result (a JSON text, or false when there is none) is a SUCCESS, which is
-- never overwritten: a late or repeated run must not turn a success into anything else.
local function stored_success(value)
  if not value then return false end
  local ok, meta = pcall(cjson.decode, value)
  return ok and type(meta) == 'table' and meta.status == 'SUCCESS'
end

