-- wallet_resync: replace a hot balance that disagrees with MySQL (the worker
-- refused a gift the hot balance allowed, e.g. after Redis was flushed while
-- gifts were in flight) by MySQL's balance minus the coins still held.
--
-- KEYS[1] {u:N}:bal
-- KEYS[2] {u:N}:holds     "p:<coins>:<ms>" and "c:<coins>:<ms>" count as held
-- KEYS[3] {u:N}:loading   set by the caller before it read MySQL
-- KEYS[4] {u:N}:credited
-- ARGV[1] balance read from MySQL
-- ARGV[2] TTL of the credited set, seconds
-- ARGV[3..] references of the recent credits that read included
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
for i = 3, #ARGV do
  redis.call('SADD', KEYS[4], ARGV[i])
end
if #ARGV >= 3 then
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
local bal = tonumber(ARGV[1]) - held
if bal < 0 then
  bal = 0
end
redis.call('SET', KEYS[1], string.format('%d', bal))
redis.call('DEL', KEYS[3])
return bal
