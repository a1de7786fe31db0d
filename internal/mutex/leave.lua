-- leave.lua: a waiter gives up. Remove it from the queue and, if the lock
-- is free, pass the turn to the next live waiter.
--
-- KEYS[1] lock hash  KEYS[2] waiter queue  KEYS[3] waiter leases
-- ARGV[1] waiter id  ARGV[2] release channel
--
-- Returns 1 when another waiter was woken, 0 otherwise.
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not head then return 0 end
redis.call('PUBLISH', ARGV[2], head)
return 1
