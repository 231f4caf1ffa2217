-- ratelimit: one decision of the generic cell rate algorithm (GCRA) for one
-- user and route class. The key holds the theoretical arrival time (TAT) of
-- the next request; a request is allowed when, after adding its own
-- emission interval, the TAT is at most burst intervals ahead of now.
-- Time comes from Redis, so every gateway replica agrees on it.
--
-- KEYS[1] {u:N}:rl:<class>
-- ARGV[1] emission interval, microseconds (1e6 / requests per second)
-- ARGV[2] burst: requests allowed at once from a rested state
--
-- Returns {1, 0} allowed, or {0, retry_after_us} refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new_tat = tat + interval
if new_tat - now > limit then
  return {0, math.floor(new_tat - now - limit)}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
