-- wallet_resync: replace a hot balance that disagrees with MySQL (the worker
-- refused a gift the hot balance allowed, e.g. after Redis was flushed while
-- gifts were in flight) by MySQL's balance minus the coins still held.
--
-- KEYS[1] {w:B}:bal:N       B = N mod 1024
-- KEYS[2] {w:B}:holds:N     "p:<coins>:<ms>" and "c:<coins>:<ms>" count as held
-- KEYS[3] {w:B}:loading:N   set by the caller before it read MySQL
-- KEYS[4] {w:B}:credited:N
-- KEYS[5] {w:B}:loaded      the bucket's set of users with a hot balance
-- ARGV[1] user id (N)
-- ARGV[2] balance read from MySQL
-- ARGV[3] TTL of the credited set, seconds
-- ARGV[4..] references of the recent credits that read included
--
-- Returns the new hot balance.
local held = 0
local holds = redis.call('HVALS', KEYS[2])
for i = 1, #holds do
  local coins = string.match(holds[i], '^[pc]:(%d+)')
  if coins then
    held = held + tonumber(coins)
  end
end
for i = 4, #ARGV do
  redis.call('SADD', KEYS[4], ARGV[i])
end
if #ARGV >= 4 then
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
local bal = tonumber(ARGV[2]) - held
if bal < 0 then
  bal = 0
end
redis.call('SET', KEYS[1], string.format('%d', bal))
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[3])
return bal
