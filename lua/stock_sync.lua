-- stock_sync: set a warm event's stock to the units that are really left:
-- MySQL's stock, minus the units still taken in Redis that MySQL does not
-- count as taken. Those are
--   * reservations pending in Redis, except the ones MySQL already decided
--     and whose settle has not run yet (a success is in MySQL's stock
--     already; a failure that returns no unit never took one in MySQL);
--   * cancelled or expired orders whose unit MySQL has back while Redis
--     still holds it: their buyer record still names their ticket, which
--     is what release.lua looks at too.
-- Everything is counted in this one atomic step, so a reservation made just
-- before or just after is counted exactly once. The caller holds the
-- event's MySQL row lock, so no order commits, expires or adds stock
-- meanwhile.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:pending
-- KEYS[3] {ev:N}:buyers
-- ARGV[1] MySQL's stock
-- ARGV[2] k, the number of released orders that follow
-- ARGV[3 .. 2+2k] user id, ticket, ... of orders MySQL released that Redis may not have
-- ARGV[3+2k ..] pending tickets MySQL decided that take no unit from Redis's count
--
-- Returns {before, after}, or {-1, -1} when the event is not warm.
local cur = redis.call('GET', KEYS[1])
if not cur then
  return {-1, -1}
end
local want = tonumber(ARGV[1])
local k = tonumber(ARGV[2])
for i = 3, 2 + 2 * k, 2 do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
    want = want - 1
  end
end
local pending = redis.call('ZCARD', KEYS[2])
for i = 3 + 2 * k, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    pending = pending - 1
  end
end
want = want - pending
if want < 0 then
  want = 0
end
if tonumber(cur) ~= want then
  redis.call('SET', KEYS[1], want, 'KEEPTTL')
end
return {tonumber(cur), want}
