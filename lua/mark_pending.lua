-- mark_pending: the reconciler sent abort markers for these reservations;
-- note it on each ticket still pending, and look at them again only at
-- ARGV[1] (in case the writer's settle is lost). Tickets no longer pending
-- are left as they are.
--
-- KEYS[1] {ev:N}:pending
-- KEYS[2] {ev:N}:tickets
-- ARGV[1] ms of the next look
-- ARGV[2] now, ms: the mark
-- ARGV[3..] tickets
local tickets = {unpack(ARGV, 3)}
local cur = redis.call('HMGET', KEYS[2], unpack(tickets))
local z, upd = {}, {}
for i, t in ipairs(tickets) do
  z[#z + 1] = ARGV[1]
  z[#z + 1] = t
  local v = cur[i]
  if v and string.sub(v, 1, 8) == 'pending|' then
    upd[#upd + 1] = t
    upd[#upd + 1] = string.match(v, '^(.*|)[^|]*$') .. ARGV[2]
  end
end
redis.call('ZADD', KEYS[1], 'XX', unpack(z))
if #upd > 0 then
  redis.call('HSET', KEYS[2], unpack(upd))
end
return #upd
