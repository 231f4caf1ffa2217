-- settle: record the final outcome of a batch of one event's tickets in
-- Redis after MySQL committed them. Idempotent: a pending entry is removed
-- once, so a unit is returned once. One call per batch: the keys share the
-- event's hash tag.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:pending
-- KEYS[3+i] {ev:N}:t:<ticket i>
-- ARGV[1] ticket hash TTL, seconds
-- then seven values per ticket i, from ARGV[2 + 7*(i-1)]:
--   user id; ticket; status (succeeded | failed); reason ("" when
--   succeeded); order number ("" when failed); on failure, the ticket the
--   user really holds ("" = none); "1" to put the unit back on failure (it
--   was never sold)
--
-- Returns the number of pending entries removed.
local removed_total = 0
for i = 4, #KEYS do
  local a = 2 + 7 * (i - 4)
  local user, ticket, status, reason, order_no, held, ret =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local removed = redis.call('ZREM', KEYS[3], ticket)
  removed_total = removed_total + removed
  if status == 'failed' then
    if removed == 1 and ret == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
      redis.call('INCR', KEYS[1])
    end
    if held ~= '' then
      redis.call('HSET', KEYS[2], user, held)
    elseif redis.call('HGET', KEYS[2], user) == ticket then
      redis.call('HDEL', KEYS[2], user, 'k:' .. user)
    end
  end
  redis.call('HSET', KEYS[i], 'u', user, 's', status, 'r', reason, 'o', order_no)
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return removed_total
