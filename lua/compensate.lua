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
-- ARGV[3] ticket hash TTL, seconds
--
-- Returns 1 when undone, 0 when too late (the worker has the order).
local s = redis.call('HGET', KEYS[4], 's')
if s == 'committing' or s == 'succeeded' or s == 'failed' then
  return 0
end
if s == 'pending' then
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('INCR', KEYS[1])
  end
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[2], ARGV[1], 'k:' .. ARGV[1])
  end
end
-- Written even when nothing was reserved (the reserve never ran, or Redis
-- lost it): a record that reaches Kafka after all must find the ticket
-- aborted and be dropped, since its buyer was told 503.
redis.call('HSET', KEYS[4], 'u', ARGV[1], 's', 'aborted')
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
