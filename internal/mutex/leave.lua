-- leave.lua: a caller gives up. Remove its waiter from the queue, drop a
-- hold its token may have taken without hearing the reply, and, if the
-- lock is free, pass the turn on as release.lua does.
--
-- KEYS[1] lock hash  KEYS[2] waiter queue  KEYS[3] waiter leases
-- ARGV[1] waiter id ("" for none)  ARGV[2] release channel
-- ARGV[3] handoff window ms  ARGV[4] the caller's token
-- ARGV[5] "1" on a quorum of independent masters, where waiters do not
--         queue: dropping a hold publishes "*" (every waiter tries again)
--
-- Returns 1 when another waiter was woken, 0 otherwise. Safe to run twice.
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local tok = redis.call('HGET', KEYS[1], 'token')
if tok and tok == ARGV[4] then
  redis.call('DEL', KEYS[1]) -- an orphaned hold of ours (its reply was lost)
  if ARGV[5] == '1' then
    redis.call('PUBLISH', ARGV[2], '*')
    return 1
  end
elseif tok then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 1)
if not first[1] then return 0 end
local deadline = now + tonumber(ARGV[3])
local lease = tonumber(redis.call('ZSCORE', KEYS[3], first[1]) or 0)
if lease > deadline then redis.call('ZADD', KEYS[3], deadline, first[1]) end
redis.call('PUBLISH', ARGV[2], table.concat(first, ' '))
return 1
