-- release.lua: delete the lock if the caller's token still owns it, then
-- hand it to the next waiter; also a waiter's way out when it gives up.
--
-- KEYS[1] lock hash  KEYS[2] waiter queue  KEYS[3] waiter leases
-- KEYS[4] the caller's token's released marker (a string that lives
--         ARGV[4] ms; one per token, so that handoffs that follow cannot
--         erase it)
-- KEYS[5] fence counter
-- ARGV[1] token      ARGV[2] release channel
-- ARGV[3] handoff lease ms: the longest first lease a waiter is handed
-- ARGV[4] how long the marker lives, ms
-- ARGV[5] "1" on a quorum of independent masters: waiters do not queue
--         there, so a release publishes "*" (every waiter of the lock
--         tries again)
-- ARGV[6] the caller's own waiter entry, removed from the queue first
--         ("" for none: an unlock; a waiter that gives up passes its
--         entry, and its token, so that a hold it was handed unheard is
--         passed on too)
--
-- Returns 1 when released (whether or not the lock was handed on), 0 when
-- another owner holds the lock (nothing is changed), -1 when the lock is
-- gone (it expired).
--
-- Safe to run twice (a retry after a lost reply): the token's marker says
-- it was released, so a second run with that token answers 1 again
-- instead of "expired" or "another owner" (the waiter it was handed to,
-- or anyone after it).
--
-- Direct handoff: a lock released (or found free) while waiters are
-- queued is not left free. The queue head (a waiter entry is a JSON array
-- [id, token, ttl ms, owner, host, pid, label]) becomes the holder at
-- once, with a new fence and a first lease of min(its ttl, ARGV[3]), and
-- the release publishes "=fence now_ms head second" (waiter ids; now_ms
-- is Redis's clock, which, with the fence, tells the head that this
-- release ran after its last attempt, see acquire.lua). The head owns
-- the lock when the message arrives, without another round trip; its
-- keep-alive extends the short first lease, and a head that died loses it
-- when that lease runs out, when the second waiter, told to try after
-- the same time, takes over. An entry that is not JSON (a waiter of an
-- older jobd) is only woken, with "head second", as before.
if ARGV[6] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[6])
  redis.call('ZREM', KEYS[3], ARGV[6])
end
local tok = redis.call('HGET', KEYS[1], 'token')
local ours = tok == ARGV[1]
local res = 1
if ours then
  redis.call('SET', KEYS[4], 1, 'PX', ARGV[4])
  if ARGV[5] == '1' then
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', ARGV[2], '*')
    return 1
  end
else
  if redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
  if tok then return 0 end
  if ARGV[5] == '1' then return -1 end
  res = -1
end

-- The lock is ours to give up, or free: hand it to the first live waiter.
local first = redis.call('ZRANGE', KEYS[2], 0, 1)
local now = 0
if first[1] then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
while first[1] do
  local lease = redis.call('ZSCORE', KEYS[3], first[1])
  if lease and tonumber(lease) > now then break end
  -- The head's lease ran out (a dead or paused process), or it has none:
  -- drop it and every other waiter whose lease ran out.
  redis.call('ZREM', KEYS[2], first[1])
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  if #stale > 0 then
    redis.call('ZREM', KEYS[2], unpack(stale))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  end
  first = redis.call('ZRANGE', KEYS[2], 0, 1)
end
if not first[1] then
  if ours then redis.call('DEL', KEYS[1]) end
  return res
end
local function id(entry)
  local ok, w = pcall(cjson.decode, entry)
  if ok and type(w) == 'table' and type(w[1]) == 'string' and type(w[2]) == 'string' then return w[1], w end
  return entry, nil
end
local head, w = id(first[1])
local second = ''
if first[2] then second = ' ' .. id(first[2]) end
if not w then
  -- An older waiter: wake it to take the free lock itself, within the
  -- handoff lease.
  if ours then redis.call('DEL', KEYS[1]) end
  local deadline = now + tonumber(ARGV[3])
  if tonumber(redis.call('ZSCORE', KEYS[3], first[1])) > deadline then
    redis.call('ZADD', KEYS[3], deadline, first[1])
  end
  redis.call('PUBLISH', ARGV[2], head .. second)
  return res
end
redis.call('ZREM', KEYS[2], first[1])
redis.call('ZREM', KEYS[3], first[1])
local lease = math.min(tonumber(w[3]) or 0, tonumber(ARGV[3]))
if lease <= 0 then lease = tonumber(ARGV[3]) end
local fence = redis.call('INCR', KEYS[5])
-- Every field is set, so the old holder's values need no DEL.
redis.call('HSET', KEYS[1], 'token', w[2], 'fence', fence,
  'owner', w[4], 'host', w[5], 'pid', w[6], 'label', w[7],
  'acquired_at', now, 'ttl', lease)
redis.call('PEXPIRE', KEYS[1], lease)
redis.call('PUBLISH', ARGV[2], '=' .. fence .. ' ' .. now .. ' ' .. head .. second)
return res
