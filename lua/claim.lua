-- claim: the worker marks a batch of one event's tickets as being committed
-- before it writes MySQL, so that a gateway that gave up on the produce can
-- no longer undo them. Two commands per batch, however large: one HMGET,
-- one HSET.
--
-- KEYS[1] {ev:N}:tickets
-- ARGV    the batch's tickets
--
-- Returns, per ticket in ARGV order, 0 when the gateway already undid the
-- reservation (drop the order), 1 otherwise (also when Redis does not know
-- the ticket, e.g. after a flush).
local cur = redis.call('HMGET', KEYS[1], unpack(ARGV))
local out, upd = {}, {}
for i = 1, #ARGV do
  local v = cur[i]
  if v and string.sub(v, 1, 8) == 'aborted|' then
    out[i] = 0
  else
    if v and string.sub(v, 1, 8) == 'pending|' then
      upd[#upd + 1] = ARGV[i]
      upd[#upd + 1] = 'committing' .. string.sub(v, 8)
    end
    out[i] = 1
  end
end
if #upd > 0 then
  redis.call('HSET', KEYS[1], unpack(upd))
end
return out
