-- gift_hold: take the coins of one gift from the sender's hot balance and
-- hold them until the worker commits the gift. Runs once per accepted gift.
-- The hold is stamped with Redis's clock as the gateway reads it (it
-- measures its offset from Redis's TIME every second), the clock the hold
-- reconciler reads: no TIME command per gift.
--
-- KEYS[1] {w:B}:bal:N      hot balance (absent = not loaded); B = N mod 1024
-- KEYS[2] {w:B}:holds:N    hash: ticket -> "p:<coins>:<ms>" pending, "c:<coins>:<ms>" claimed,
--                          "a:<ms>" aborted, "d:<ms>" decided; "m:<ticket>" -> ms an abort
--                          marker was sent
-- KEYS[3] {w:B}:idem:N:<key>  the answer to an Idempotency-Key ({w:B}:idem:N: when none)
-- KEYS[4] {w:B}:rl:gift:N  the sender's gift rate limit: the GCRA's theoretical
--                          arrival time, microseconds (see ratelimit.lua)
-- KEYS[5] {w:B}:holders    zset: user id -> ms from which the hold reconciler
--                          counts the pending timeout (see gift_holds_look.lua)
-- KEYS[6] {w:B}:loading:N  a wallet load in progress (see wallet_credit.lua)
-- ARGV[1] ticket
-- ARGV[2] coins
-- ARGV[3] "1" when an Idempotency-Key was sent
-- ARGV[4] idempotency TTL, seconds
-- ARGV[5] rate limit emission interval, microseconds; "0" for no limit
-- ARGV[6] rate limit burst
-- ARGV[7] the sender's user id (N)
-- ARGV[8] now, microseconds by Redis's clock
-- ARGV[9] how long a load may hold the loading mark, ms
--
-- The sender goes into the bucket's holders index with the hold's time, or
-- keeps an earlier time that is there (ZADD LT: add, or lower the score,
-- never raise it), so the reconciler finds every hold without a scan.
--
-- The limit is applied here, so that an accepted gift is one round trip. It
-- counts the requests that reach the balance check; a replay, or a wallet
-- that must be loaded first (the gateway then calls again), does not count.
--
-- Returns {0, balance_after, held_at_ms} held; {1, "<ticket>:<balance_after>"}
-- a replay of the key; {2, balance} insufficient balance; {3} wallet not
-- loaded; {4, retry_after_us} rate limited. When the wallet is not loaded
-- the script also marks a load in progress if none is, and answers {3, 1}
-- when the caller is the one to load it ({3, 0}: someone else is): a cold
-- wallet costs no round trip to ask.
if ARGV[3] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    return {1, prev}
  end
end
local bal = redis.call('GET', KEYS[1])
if not bal then
  if redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[9]) then
    return {3, 1}
  end
  return {3, 0}
end
local now_us = tonumber(ARGV[8])
local interval = tonumber(ARGV[5])
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tat < now_us then
    tat = now_us
  end
  local new_tat = tat + interval
  local over = new_tat - now_us - interval * tonumber(ARGV[6])
  if over > 0 then
    return {4, math.floor(over)}
  end
  redis.call('SET', KEYS[4], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + 1)
end
bal = tonumber(bal)
local coins = tonumber(ARGV[2])
if bal < coins then
  return {2, bal}
end
local now = math.floor(now_us / 1000)
local after = redis.call('DECRBY', KEYS[1], coins)
redis.call('HSET', KEYS[2], ARGV[1], 'p:' .. coins .. ':' .. now)
redis.call('ZADD', KEYS[5], 'LT', now, ARGV[7])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[1] .. ':' .. after, 'EX', ARGV[4])
end
return {0, after, now}
