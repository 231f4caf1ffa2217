-- claim: the worker marks a batch of one event's tickets as being committed
-- before it writes MySQL, so that a gateway that gave up on the produce can
-- no longer undo them. One call per batch: the tickets share the event's
-- hash tag.
--
-- KEYS[i] {ev:N}:t:<ticket>, one per ticket of the batch
--
-- Returns, per ticket in KEYS order, 0 when the gateway already undid the
-- reservation (drop the order), 1 otherwise (also when the ticket hash is
-- gone, e.g. after a Redis flush).
local out = {}
for i, key in ipairs(KEYS) do
  local s = redis.call('HGET', key, 's')
  if s == 'aborted' then
    out[i] = 0
  else
    if s == 'pending' then
      redis.call('HSET', key, 's', 'committing')
    end
    out[i] = 1
  end
end
return out
