-- extend.lua: renew the lease if the caller's token still owns the lock.
--
-- KEYS[1] lock hash
-- ARGV[1] token  ARGV[2] new ttl ms
--
-- Returns 1 when extended, 0 when another owner holds the lock (nothing is
-- changed), -1 when the lock is gone. Safe to run twice: a second run
-- with the same token renews the same lease again.
local tok = redis.call('HGET', KEYS[1], 'token')
if not tok then return -1 end
if tok ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
