-- release.lua: delete the lock if the caller's token still owns it, then
-- wake the next waiter.
--
-- KEYS[1] lock hash  KEYS[2] waiter queue  KEYS[3] waiter leases
-- ARGV[1] token      ARGV[2] release channel
--
-- Returns 1 when released, 0 when another owner holds the lock (nothing is
-- changed), -1 when the lock is gone (it expired).
--
-- Only the queue head's id is published: every subscribed process sees the
-- message, but only the process whose waiter it names retries.
local tok = redis.call('HGET', KEYS[1], 'token')
if not tok then return -1 end
if tok ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head then redis.call('PUBLISH', ARGV[2], head) end
return 1
