-- addstock: add units to a warm event. A cold event is left alone: its
-- warm-up will read the new stock from MySQL.
--
-- KEYS[1] {ev:N}:stock
-- ARGV[1] units to add
--
-- Returns the new stock, or -1 when the event is not warm.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
