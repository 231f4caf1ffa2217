-- settle: record the final outcome of a batch of one event's tickets in
-- Redis after MySQL committed them. Idempotent: a pending entry is removed
-- once, so a unit is returned once. For a batch of successes it is three
-- commands however large the batch (HMGET, ZREM, HSET); a failure adds a few
-- of its own.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:pending
-- KEYS[4] {ev:N}:tickets
-- ARGV[1] TTL, seconds, for the tickets hash should this call create it
--         (Redis lost it; warm.lua creates it with the event's life)
-- then seven values per ticket i, from ARGV[2 + 7*(i-1)]:
--   user id; ticket; status (succeeded | failed); reason ("" when
--   succeeded); order number ("" when failed); on failure, the ticket the
--   user really holds ("" = none); "1" to put the unit back on failure (it
--   was never sold)
--
-- Returns the number of pending entries removed.
local n = (#ARGV - 1) / 7
local tickets = {}
for i = 0, n - 1 do
  tickets[i + 1] = ARGV[3 + 7 * i]
end
local fresh = redis.call('EXISTS', KEYS[4]) == 0
local cur = {}
if not fresh then
  cur = redis.call('HMGET', KEYS[4], unpack(tickets))
end
local removed_total = 0
local succeeded, upd = {}, {}
for i = 0, n - 1 do
  local a = 2 + 7 * i
  local user, ticket, status, reason, order_no, held, ret =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  if status == 'failed' then
    local removed = redis.call('ZREM', KEYS[3], ticket)
    removed_total = removed_total + removed
    if removed == 1 and ret == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
      redis.call('INCR', KEYS[1])
    end
    if held ~= '' then
      redis.call('HSET', KEYS[2], user, held)
    elseif redis.call('HGET', KEYS[2], user) == ticket then
      redis.call('HDEL', KEYS[2], user, 'k:' .. user)
    end
  else
    succeeded[#succeeded + 1] = ticket
  end
  local created = ''
  if cur[i + 1] then
    created = string.match(cur[i + 1], '^[^|]*|[^|]*|([^|]*)') or ''
  end
  upd[#upd + 1] = ticket
  upd[#upd + 1] = status .. '|' .. user .. '|' .. created .. '|' .. reason .. '|' .. order_no .. '|'
end
if #succeeded > 0 then
  removed_total = removed_total + redis.call('ZREM', KEYS[3], unpack(succeeded))
end
redis.call('HSET', KEYS[4], unpack(upd))
if fresh then
  redis.call('EXPIRE', KEYS[4], ARGV[1])
end
return removed_total
