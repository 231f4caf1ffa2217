-- release: put a unit back on sale after its order was cancelled or expired
-- in MySQL, and let the user buy again. Idempotent: the buyer record still
-- naming the order's ticket is what says the unit was not given back yet, so
-- the worker may repeat a release whose answer it never saw.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- ARGV[1] user id
-- ARGV[2] the order's ticket
--
-- When the event is not warm nothing is done: the next warm-up reads MySQL,
-- which already has the unit back. Returns 1 when a unit went back, else 0.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1], 'k:' .. ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCR', KEYS[1])
  return 1
end
return 0
