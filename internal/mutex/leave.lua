-- leave.lua: on a quorum of independent masters, drop a hold the caller's
-- token may have taken on this master (a minority it gives back, or a
-- hold whose reply was lost) and let every waiter try again. Waiters do
-- not queue on a quorum, so there is no queue to pass on (on one Redis a
-- waiter that gives up runs release.lua with its entry instead).
--
-- KEYS[1] lock hash
-- ARGV[1] the caller's token  ARGV[2] release channel
--
-- Returns 1 when a hold was dropped (and "*" published), 0 otherwise.
-- Safe to run twice.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], '*')
return 1
