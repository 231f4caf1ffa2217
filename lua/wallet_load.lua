-- wallet_load: install a balance read from MySQL as the hot copy, unless one
-- is there already, and mark the credits that MySQL read already included.
--
-- KEYS[1] {u:N}:bal       the hot balance (absent = not loaded)
-- KEYS[2] {u:N}:loading   set while a load reads MySQL (see wallet_credit)
-- KEYS[3] {u:N}:credited  set of credit references already in the balance
-- ARGV[1] balance read from MySQL
-- ARGV[2] TTL of the credited set, seconds
-- ARGV[3..] references of the recent credits that read included
--
-- Returns the hot balance.
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
end
if #ARGV >= 3 then
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return tonumber(redis.call('GET', KEYS[1]))
