-- wallet_credit: add coins to the hot balance after MySQL committed them
-- (a recharge, a refund), exactly once per reference.
--
-- KEYS[1] {w:B}:bal:N
-- KEYS[2] {w:B}:loading:N
-- KEYS[3] {w:B}:credited:N
-- ARGV[1] coins
-- ARGV[2] reference (e.g. "recharge:<order id>")
-- ARGV[3] TTL of the credited set, seconds
--
-- Returns 1 when credited or nothing to do (not loaded: the next load reads
-- MySQL), 0 when this reference was credited before, -1 when a load or a
-- resync is reading MySQL right now (call again shortly): it may or may not
-- see this credit, and marks the ones it saw.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[3], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 1
