-- gift_hold: take the coins of one gift from the sender's hot balance and
-- hold them until the worker commits the gift. Runs once per accepted gift.
--
-- KEYS[1] {u:N}:bal      hot balance (absent = not loaded)
-- KEYS[2] {u:N}:holds    hash: ticket -> "p:<coins>:<ms>" pending, "c:<coins>:<ms>" claimed, "a:<ms>" aborted
-- KEYS[3] {u:N}:idem:<key>  the answer to an Idempotency-Key ({u:N}:idem: when none)
-- ARGV[1] ticket
-- ARGV[2] coins
-- ARGV[3] "1" when an Idempotency-Key was sent
-- ARGV[4] now, unix ms
-- ARGV[5] idempotency TTL, seconds
--
-- Returns {0, balance_after} held; {1, "<ticket>:<balance_after>"} a replay
-- of the key; {2, balance} insufficient balance; {3} wallet not loaded.
if ARGV[3] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    return {1, prev}
  end
end
local bal = redis.call('GET', KEYS[1])
if not bal then
  return {3}
end
bal = tonumber(bal)
local coins = tonumber(ARGV[2])
if bal < coins then
  return {2, bal}
end
local after = redis.call('DECRBY', KEYS[1], coins)
redis.call('HSET', KEYS[2], ARGV[1], 'p:' .. coins .. ':' .. ARGV[4])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[1] .. ':' .. after, 'EX', ARGV[5])
end
return {0, after}
