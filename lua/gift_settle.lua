-- gift_settle: end a hold after MySQL decided its gift. A committed gift just
-- ends the hold (the coins are spent); a failed one gives the coins back to
-- the hot balance. Idempotent: the coins of a hold come back once. The hold
-- becomes "d:<ms>" (decided), so a gateway still waiting for its produce
-- learns that the gift got in; the hold reconciler drops it later.
--
-- KEYS[1] {w:B}:bal:N
-- KEYS[2] {w:B}:holds:N
-- ARGV[1] ticket
-- ARGV[2] "1" committed, "0" failed
-- ARGV[3] now, ms by Redis's clock (as the worker reads it: no TIME per gift)
--
-- Returns the coins given back (0 when committed or already settled).
local h = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], 'm:' .. ARGV[1])
if not h then
  return 0
end
local kind = string.sub(h, 1, 1)
if kind == 'a' or kind == 'd' then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], 'd:' .. ARGV[3])
if ARGV[2] == '1' then
  return 0
end
local coins = tonumber(string.match(h, '^%a:(%d+)'))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], coins)
end
return coins
