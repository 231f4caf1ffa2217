-- gift_settle: end a hold after MySQL decided its gift. A committed gift just
-- drops the hold (the coins are spent); a failed one gives the coins back to
-- the hot balance. Idempotent: the hold is removed once.
--
-- KEYS[1] {u:N}:bal
-- KEYS[2] {u:N}:holds
-- ARGV[1] ticket
-- ARGV[2] "1" committed, "0" failed
--
-- Returns the coins given back (0 when committed or already settled).
local h = redis.call('HGET', KEYS[2], ARGV[1])
if not h then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] == '1' or string.sub(h, 1, 1) == 'a' then
  return 0
end
local coins = tonumber(string.match(h, '^%a:(%d+)'))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], coins)
end
return coins
