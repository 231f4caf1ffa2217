-- compensate: undo a reservation whose produce failed, unless the worker
-- already claimed it (then the order is in Kafka after all).
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:pending
-- KEYS[4] {ev:N}:tickets
-- ARGV[1] user id
-- ARGV[2] ticket
-- ARGV[3] TTL, seconds, for the tickets hash should this call create it
--
-- Returns 1 when the reservation is undone (or never existed: the ticket is
-- then marked aborted so a late claim drops it), 0 when the worker has it.
local v = redis.call('HGET', KEYS[4], ARGV[2])
local s = v and string.match(v, '^[^|]*')
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
local created = ''
if v then
  created = string.match(v, '^[^|]*|[^|]*|([^|]*)') or ''
end
local fresh = redis.call('EXISTS', KEYS[4]) == 0
redis.call('HSET', KEYS[4], ARGV[2], 'aborted|' .. ARGV[1] .. '|' .. created .. '|||')
if fresh then
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return 1
