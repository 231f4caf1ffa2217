-- gift_undo: give back a hold whose gift never reached Kafka (the produce
-- failed), so a 503 charges nothing, and forget the idempotency answer. If the
-- worker already claimed or decided it, the gift did reach Kafka and nothing
-- is undone.
--
-- KEYS[1] {w:B}:bal:N
-- KEYS[2] {w:B}:holds:N
-- KEYS[3] {w:B}:idem:N:<key> ({w:B}:idem:N: when none)
-- KEYS[4] {w:B}:holders   the bucket's index of users with holds
-- ARGV[1] ticket
-- ARGV[2] the sender's user id (N)
--
-- Returns 1 when undone (or nothing was held), 0 when too late.
local h = redis.call('HGET', KEYS[2], ARGV[1])
if h then
  local kind = string.sub(h, 1, 2)
  if kind == 'a:' then
    return 1
  end
  if kind ~= 'p:' then
    return 0
  end
  local coins = tonumber(string.match(h, '^p:(%d+)'))
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('INCRBY', KEYS[1], coins)
  end
end
-- Kept as "a:<ms>", also when nothing was held (the hold never ran, or Redis
-- lost it), so that a message delivered late after all is dropped; the hold
-- reconciler deletes it a day later. The sender is indexed for that (NX: a
-- sender with a hold is indexed already, at an earlier time).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[2], ARGV[1], string.format('a:%d', now))
redis.call('ZADD', KEYS[4], 'NX', now, ARGV[2])
local prev = redis.call('GET', KEYS[3])
if prev and string.sub(prev, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  redis.call('DEL', KEYS[3])
end
return 1
