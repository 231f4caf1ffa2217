-- compensate: undo a reservation whose order never reached Kafka (the produce
-- failed), so a 503 leaves nothing reserved. If the worker already claimed the
-- ticket, the order did reach Kafka after all and nothing is undone.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:pending
-- KEYS[4] {ev:N}:t:<ticket>
-- ARGV[1] user id
-- ARGV[2] ticket
--
-- Returns 1 when undone, 0 when too late (the worker has the order).
local s = redis.call('HGET', KEYS[4], 's')
if not s then
  -- The reserve never ran (e.g. it timed out before Redis saw it), or Redis
  -- lost everything: there is nothing to undo.
  return 1
end
if s == 'committing' or s == 'succeeded' or s == 'failed' then
  return 0
end
if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCR', KEYS[1])
end
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1], 'k:' .. ARGV[1])
end
-- Kept, so that a message delivered late after all is dropped by the worker.
redis.call('HSET', KEYS[4], 's', 'aborted')
return 1
