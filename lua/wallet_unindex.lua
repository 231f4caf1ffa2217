-- wallet_unindex: take a user out of the bucket's loaded set once the hot
-- balance is gone (deleted by hand, evicted), unless a load put it back in
-- the meantime: checked and removed in one step, so a loaded balance is
-- never left out of the set.
--
-- KEYS[1] {w:B}:bal:N   B = N mod 1024
-- KEYS[2] {w:B}:loaded
-- ARGV[1] user id (N)
--
-- Returns 1 when the user was taken out, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
return redis.call('SREM', KEYS[2], ARGV[1])
