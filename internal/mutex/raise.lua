-- raise.lua: on a quorum of independent masters, lift this master's fence
-- counter to the fence a new holder took, so that a later holder's fence,
-- taken on any majority, is above it.
--
-- KEYS[1] fence counter  KEYS[2] lock hash
-- ARGV[1] the holder's fence (the largest its majority handed out)
-- ARGV[2] the holder's token
--
-- Returns 1. The counter never goes down; the lock hash's fence field is
-- set only while this token holds the lock here. Safe to run twice.
local f = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < f then
  redis.call('SET', KEYS[1], f)
end
if redis.call('HGET', KEYS[2], 'token') == ARGV[2] then
  redis.call('HSET', KEYS[2], 'fence', f)
end
return 1
