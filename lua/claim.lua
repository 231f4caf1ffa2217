-- claim: the worker marks a ticket as being committed before it writes MySQL,
-- so that a gateway that gave up on the produce can no longer undo it.
--
-- KEYS[1] {ev:N}:t:<ticket>
--
-- Returns 0 when the gateway already undid the reservation (drop the order),
-- 1 otherwise (also when the ticket hash is gone, e.g. after a Redis flush).
local s = redis.call('HGET', KEYS[1], 's')
if s == 'aborted' then
  return 0
end
if s == 'pending' then
  redis.call('HSET', KEYS[1], 's', 'committing')
end
return 1
