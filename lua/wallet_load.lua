-- wallet_load: install a balance read from MySQL as the hot copy, unless one
-- is there already, and mark the credits that MySQL read already included.
--
-- KEYS[1] {w:B}:bal:N       the hot balance (absent = not loaded); B = N mod 1024
-- KEYS[2] {w:B}:loading:N   set while a load reads MySQL (see wallet_credit)
-- KEYS[3] {w:B}:credited:N  set of credit references already in the balance
-- KEYS[4] {w:B}:loaded      the bucket's set of users with a hot balance,
--                           which the wallet reconciler walks
-- ARGV[1] user id (N)
-- ARGV[2] balance read from MySQL
-- ARGV[3] TTL of the credited set, seconds
-- ARGV[4..] references of the recent credits that read included
--
-- Returns the hot balance.
redis.call('DEL', KEYS[2])
for i = 4, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
end
if #ARGV >= 4 then
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2], 'NX')
redis.call('SADD', KEYS[4], ARGV[1])
return tonumber(redis.call('GET', KEYS[1]))
