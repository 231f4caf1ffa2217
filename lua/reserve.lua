-- reserve: take one unit of an event for a user, atomically, and record the
-- pending reservation. The gateway runs this once per accepted order request,
-- in one round trip: six commands, no per-ticket key and no TIME. The
-- reservation is stamped with Redis's clock as the gateway reads it (it
-- measures its offset from Redis's TIME every second), the clock the
-- reconciler ages reservations by, so gateways and workers whose clocks
-- disagree still agree on how old a reservation is.
--
-- KEYS[1] {ev:N}:stock    units left for reservation (absent = event not warm)
-- KEYS[2] {ev:N}:buyers   hash: user id -> ticket, and "k:<user>" -> idempotency key
-- KEYS[3] {ev:N}:pending  zset: ticket -> ms when the reconciler next looks at it
--                         (first: reserved-at), reservations without an outcome
-- KEYS[4] {ev:N}:tickets  hash: ticket -> its state, see store.TicketState
-- ARGV[1] user id
-- ARGV[2] new ticket
-- ARGV[3] idempotency key, or ""
-- ARGV[4] now, ms by Redis's clock
--
-- Returns {0, ticket, stock_left, reserved_at_ms} reserved; {1,
-- existing_ticket, replay 0|1} the user already holds a unit (replay=1 when
-- the idempotency key matches); {2} sold out; {3} the event is not in Redis
-- (not warm).
local stock = redis.call('GET', KEYS[1])
if not stock then
  return {3}
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  local replay = 0
  if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], 'k:' .. ARGV[1]) == ARGV[3] then
    replay = 1
  end
  return {1, existing, replay}
end
stock = tonumber(stock)
if stock <= 0 then
  return {2}
end
redis.call('DECR', KEYS[1])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2], 'k:' .. ARGV[1], ARGV[3])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
-- status|user|created|reason|order no|marked
redis.call('HSET', KEYS[4], ARGV[2], 'pending|' .. ARGV[1] .. '|' .. ARGV[4] .. '|||')
return {0, ARGV[2], stock - 1, tonumber(ARGV[4])}
