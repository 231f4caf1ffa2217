-- gift_holds_look: the hold reconciler's look at one user's holds, in one
-- step, so that it cannot lose a hold that arrives meanwhile.
--
-- KEYS[1] {w:B}:holds:N   B = N mod 1024 (see gift_hold.lua)
-- KEYS[2] {w:B}:holders   zset: user id -> ms from which the reconciler
--                         counts the pending timeout before it looks at the
--                         user; due when score <= now - timeout
-- ARGV[1] user id (N)
-- ARGV[2] now, ms: the clock of the reconciler's pass (Redis's TIME, read
--         at its start)
-- ARGV[3] FLASHGATE_PENDING_TIMEOUT, ms
-- ARGV[4] how long an undone hold's "a:" entry is kept, ms
--
-- It drops what the hash keeps only for a while: "d:" (decided) entries
-- older than the timeout, "a:" (undone) entries older than ARGV[4], and
-- abort-marker fields "m:<ticket>" whose hold is gone. It returns the
-- pending and claimed holds that are stale (held at or before now -
-- timeout), for the reconciler to decide about.
--
-- Then it sets the user's score to the earliest time an entry left needs a
-- look: a young hold's own time, a stale hold's "now" (the reconciler deals
-- with it now and looks again one timeout later, in case a settle is lost),
-- a "d:" entry's time, an "a:" entry's time + ARGV[4] - timeout. A user
-- with nothing left leaves the index. A hold that gift_hold.lua adds after
-- this runs lowers the score if need be (ZADD LT) or indexes the user again.
--
-- Returns {next, ticket1, hold1, marked1, ticket2, ...}: next is the user's
-- new score (-1: left the index); hold is the hash value ("p:<coins>:<ms>"
-- or "c:<coins>:<ms>"), marked 1 when an abort marker was sent for it.
local now = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
local alife = tonumber(ARGV[4])
local cutoff = now - timeout
local h = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #h, 2 do
  fields[h[i]] = h[i + 1]
end
local out = {0}
local drop = {}
local look = nil
for f, v in pairs(fields) do
  local at = nil
  if string.sub(f, 1, 2) == 'm:' then
    if not fields[string.sub(f, 3)] then
      drop[#drop + 1] = f
    end
  else
    local kind = string.sub(v, 1, 1)
    if kind == 'p' or kind == 'c' then
      local ms = tonumber(string.match(v, '^[pc]:%d+:(%d+)$'))
      if ms and ms <= cutoff then
        local marked = '0'
        if fields['m:' .. f] then
          marked = '1'
        end
        out[#out + 1] = f
        out[#out + 1] = v
        out[#out + 1] = marked
        at = now
      else
        at = ms
      end
    elseif kind == 'a' or kind == 'd' then
      local life = timeout
      if kind == 'a' then
        life = alife
      end
      local ms = tonumber(string.match(v, '^[ad]:(%d+)$'))
      if not ms or ms <= now - life then
        drop[#drop + 1] = f
      else
        at = ms + life - timeout
      end
    end
  end
  if at and (not look or at < look) then
    look = at
  end
end
for i = 1, #drop, 1000 do
  redis.call('HDEL', KEYS[1], unpack(drop, i, math.min(i + 999, #drop)))
end
if look then
  redis.call('ZADD', KEYS[2], string.format('%d', look), ARGV[1])
  out[1] = look
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  out[1] = -1
end
return out
