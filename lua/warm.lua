-- warm: load an event into Redis from MySQL. Called in chunks: every call
-- adds buyers; only the last one (ARGV[1] ~= "") sets the stock, which is what
-- marks the event warm, so reservations start only once all buyers are in.
-- The buyers and tickets hashes are made here, each with a "_" field that
-- is never removed, so that they carry the event's expiry from the start
-- and keep it: a hash that Redis deletes when its last field goes would come
-- back without one.
--
-- KEYS[1] {ev:N}:stock
-- KEYS[2] {ev:N}:buyers
-- KEYS[3] {ev:N}:tickets
-- ARGV[1] stock to set, or "" for a chunk of buyers only
-- ARGV[2] unix seconds at which the keys expire
-- ARGV[3..] user id, ticket, user id, ticket, ...
--
-- Returns 0 when the event was already warm (nothing changed), 1 otherwise.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], '_', '')
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', KEYS[2], ARGV[2])
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[3], '_', '')
  redis.call('EXPIREAT', KEYS[3], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 1
