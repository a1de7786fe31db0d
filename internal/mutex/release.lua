-- release.lua: delete the lock if the caller's token still owns it, then
-- wake the next waiter.
--
-- KEYS[1] lock hash  KEYS[2] waiter queue  KEYS[3] waiter leases
-- KEYS[4] released-token marker (string: the token of the last release)
-- ARGV[1] token      ARGV[2] release channel  ARGV[3] handoff window ms
-- ARGV[4] how long the marker lives, ms
-- ARGV[5] "1" on a quorum of independent masters: waiters do not queue
--         there, so a release without a queue publishes "*" (every
--         waiter of the lock tries again)
--
-- Returns 1 when released (whether or not a waiter was woken), 0 when
-- another owner holds the lock (nothing is changed), -1 when the lock is
-- gone (it expired).
--
-- Safe to run twice (a retry after a lost reply): the marker remembers the
-- token of the last release, so a second run with that token answers 1
-- again instead of "expired".
--
-- Only the ids of the first two waiters are published ("head second"):
-- every subscribed process sees the message, but only the head retries at
-- once, and the second only if the head has not taken over within the
-- handoff window (the head died). So a handoff costs a bounded number of
-- commands however many processes wait.
local tok = redis.call('HGET', KEYS[1], 'token')
if tok ~= ARGV[1] then
  if redis.call('GET', KEYS[4]) == ARGV[1] then return 1 end
  if not tok then return -1 end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4])

if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[5] == '1' then redis.call('PUBLISH', ARGV[2], '*') end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Drop waiters whose lease ran out (dead or paused processes).
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 1)
if first[1] then
  local deadline = now + tonumber(ARGV[3])
  local lease = tonumber(redis.call('ZSCORE', KEYS[3], first[1]) or 0)
  if lease > deadline then redis.call('ZADD', KEYS[3], deadline, first[1]) end
  redis.call('PUBLISH', ARGV[2], table.concat(first, ' '))
end
return 1
