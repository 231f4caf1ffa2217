-- reserve: take one unit of an event for a user, atomically, and record the
-- pending reservation. The gateway runs this once per accepted order request.
--
-- KEYS[1] {ev:N}:stock    units left for reservation (absent = event not warm)
-- KEYS[2] {ev:N}:buyers   hash: user id -> ticket, and "k:<user>" -> idempotency key
-- KEYS[3] {ev:N}:pending  zset: ticket -> reserved-at (ms), reservations without an outcome
-- KEYS[4] {ev:N}:t:<ticket>  hash of the new ticket: u user, s status, c created ms
-- ARGV[1] user id
-- ARGV[2] new ticket
-- ARGV[3] now, unix ms
-- ARGV[4] idempotency key, or ""
-- ARGV[5] ticket hash TTL, seconds
--
-- Returns {0, ticket, stock_left} reserved; {1, existing_ticket, replay 0|1}
-- the user already holds a unit (replay=1 when the idempotency key matches);
-- {2} sold out; {3} the event is not in Redis (not warm).
local stock = redis.call('GET', KEYS[1])
if not stock then
  return {3}
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  local replay = 0
  if ARGV[4] ~= '' and redis.call('HGET', KEYS[2], 'k:' .. ARGV[1]) == ARGV[4] then
    replay = 1
  end
  return {1, existing, replay}
end
stock = tonumber(stock)
if stock <= 0 then
  return {2}
end
redis.call('DECR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'k:' .. ARGV[1], ARGV[4])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[4], 'u', ARGV[1], 's', 'pending', 'c', ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return {0, ARGV[2], stock - 1}
