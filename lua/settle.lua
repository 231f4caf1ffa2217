-- settle: record a ticket's final outcome in Redis after MySQL committed it.
-- Idempotent: the pending entry is removed once, so a unit is returned once.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:pending
-- KEYS[4] {ev:N}:t:<ticket>
-- ARGV[1] user id
-- ARGV[2] ticket
-- ARGV[3] status: succeeded | failed
-- ARGV[4] reason ("" when succeeded)
-- ARGV[5] order number ("" when failed)
-- ARGV[6] on failure, the ticket the user really holds ("" = none)
-- ARGV[7] "1" to put the unit back on failure (it was never sold)
-- ARGV[8] ticket hash TTL, seconds
local removed = redis.call('ZREM', KEYS[3], ARGV[2])
if ARGV[3] == 'failed' then
  if removed == 1 and ARGV[7] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('INCR', KEYS[1])
  end
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
  elseif redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[2], ARGV[1], 'k:' .. ARGV[1])
  end
end
redis.call('HSET', KEYS[4], 'u', ARGV[1], 's', ARGV[3], 'r', ARGV[4], 'o', ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[8])
return removed
