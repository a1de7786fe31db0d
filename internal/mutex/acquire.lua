-- acquire.lua: take the lock if it is free and the caller may have it.
--
-- KEYS[1] lock hash     (token, fence, owner, host, pid, label, acquired_at, ttl)
-- KEYS[2] fence counter (never expires, so fences only grow)
-- KEYS[3] waiter queue  (zset: member = waiter id, score = enqueue time ms)
-- KEYS[4] waiter leases (zset: member = waiter id, score = lease expiry ms)
-- KEYS[5] this token's released marker (release.lua sets it when it
--         releases this token's hold)
-- ARGV[1] token (random, 128 bits)     ARGV[2] ttl ms
-- ARGV[3] waiter entry, "" for a caller that does not wait: a JSON array
--         [id, token, ttl ms, owner, host, pid, label] that release.lua
--         reads to hand the lock to this waiter directly
-- ARGV[4] waiter grace ms: how long a waiter stays queued past its next retry
-- ARGV[5] owner  ARGV[6] host  ARGV[7] pid  ARGV[8] label
-- Optional SET NX key: created first; it must be absent or already hold
-- this attempt's value for the acquisition to go on:
-- KEYS[6] the key  ARGV[9] its value (unique per attempt)  ARGV[10] its ttl ms
-- ARGV[11] not before, ARGV[12] not after: Redis times (ms) outside which a
--          new key is refused ("0": no bound)
--
-- Returns {1, fence} when the lock is held by this token, {0, retry_ms,
-- seen, now_ms} when not (retry_ms is the longest the caller should wait
-- before trying again even if no release is announced: the lock's PTTL,
-- or the queue head's remaining lease; seen is a fence at least as large
-- as any that a release handed this waiter before this run, the holder's
-- or the counter's, and now_ms Redis's clock: a handoff message the
-- waiter still finds afterwards is known to be stale unless its fence is
-- larger and its time no earlier; the time also holds when a restart
-- without persistence reset the fences), {-1, 0} when the SET NX key holds another value
-- (nothing is changed), and {-2, now_ms} when the key is new but Redis's
-- clock is outside [not before, not after] (nothing is changed), and
-- {-3, 0} when this token's hold was already released (nothing is changed).
--
-- Safe to run twice with the same arguments (a retry after a lost reply):
-- a SET NX key whose value is ours is ours, and a lock whose token is ours is
-- held (its lease is renewed to ttl from now), so the retry answers what
-- the first run did. A late copy of an attempt whose hold was already
-- released (a request stuck in the network while the caller retried on
-- another connection) finds its token's released marker and takes
-- nothing.
--
-- A release hands the lock to the queue head itself (release.lua), so a
-- lock is free while waiters are queued only when its lease ran out (the
-- holder died). Then a queued waiter takes it only when it is the head,
-- and a caller that does not wait takes it as it comes: its first try
-- does not look at the queue, which saves the common, uncontended case a
-- command. Times come from Redis, never clients.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if KEYS[6] then
  local cur = redis.call('GET', KEYS[6])
  if not cur then
    local lo, hi = tonumber(ARGV[11] or 0), tonumber(ARGV[12] or 0)
    if (lo > 0 and now < lo) or (hi > 0 and now > hi) then return {-2, now} end
    redis.call('SET', KEYS[6], ARGV[9], 'PX', ARGV[10])
  elseif cur ~= ARGV[9] then
    return {-1, 0}
  end
end

local waiter = ARGV[3]
local grace = tonumber(ARGV[4])

local held = redis.call('HMGET', KEYS[1], 'token', 'fence')
local tok = held[1]
if not tok and redis.call('EXISTS', KEYS[5]) == 1 then
  return {-3, 0} -- a late copy of an attempt whose hold was released
end
if tok == ARGV[1] then
  -- Ours already: an earlier run of this very attempt took it.
  redis.call('HSET', KEYS[1], 'ttl', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if waiter ~= '' then
    redis.call('ZREM', KEYS[3], waiter)
    redis.call('ZREM', KEYS[4], waiter)
  end
  return {1, tonumber(held[2])}
end

-- The counter: at least every fence handed out so far.
local function counter() return tonumber(redis.call('GET', KEYS[2]) or 0) end

local function enqueue(wait_ms)
  if waiter == '' then return end
  local expiry = now + wait_ms + grace
  redis.call('ZADD', KEYS[3], 'NX', now, waiter)
  redis.call('ZADD', KEYS[4], expiry, waiter)
  -- Let an abandoned queue disappear by itself.
  if redis.call('PTTL', KEYS[4]) < wait_ms + grace then
    redis.call('PEXPIRE', KEYS[3], wait_ms + grace)
    redis.call('PEXPIRE', KEYS[4], wait_ms + grace)
  end
end

if tok then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 then pttl = tonumber(ARGV[2]) end
  enqueue(pttl)
  -- The holder's fence: a hold handed to this waiter before now ended
  -- before the holder got the lock, so it had a smaller fence.
  return {0, pttl, tonumber(held[2]) or counter(), now}
end

-- Free. A queued waiter first drops the waiters whose lease ran out (dead
-- or paused processes), then takes the lock only as the queue head.
local head = nil
if waiter ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
  if #stale > 0 then
    redis.call('ZREM', KEYS[3], unpack(stale))
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  end
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
while head and head ~= waiter do
  local head_expiry = redis.call('ZSCORE', KEYS[4], head)
  if head_expiry then
    enqueue(tonumber(head_expiry) - now)
    return {0, tonumber(head_expiry) - now, counter(), now}
  end
  redis.call('ZREM', KEYS[3], head) -- queued without a lease: stale
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
if head then
  redis.call('ZREM', KEYS[3], waiter)
  redis.call('ZREM', KEYS[4], waiter)
end

local fence = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'fence', fence,
  'owner', ARGV[5], 'host', ARGV[6], 'pid', ARGV[7], 'label', ARGV[8],
  'acquired_at', now, 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, fence}
