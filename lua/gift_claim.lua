-- gift_claim: the worker marks a held gift as being committed before it
-- writes MySQL, so a gateway that gave up on the produce can no longer undo it.
--
-- KEYS[1] {w:B}:holds:N
-- ARGV[1] ticket
--
-- Returns 0 when the gateway already undid the hold (drop the gift), 1
-- otherwise (also when the hold is gone, e.g. after a Redis flush, or already
-- decided: MySQL's tickets table then has the outcome).
local h = redis.call('HGET', KEYS[1], ARGV[1])
if h and string.sub(h, 1, 1) == 'a' then
  return 0
end
if h and string.sub(h, 1, 2) == 'p:' then
  redis.call('HSET', KEYS[1], ARGV[1], 'c:' .. string.sub(h, 3))
end
return 1
