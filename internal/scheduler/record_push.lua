-- record_push.lua: add a run to an instance's history, capped.
--
-- KEYS[1] runs hash (run id -> record JSON)   KEYS[2] history list (run ids, newest first)
-- KEYS[3] running index (run id -> JSON), touched only when ARGV[4] is not ""
-- KEYS[4] the run's claim key, checked only when ARGV[5] is not ""
-- ARGV[1] run id  ARGV[2] record JSON  ARGV[3] history cap  ARGV[4] running-index JSON or ""
-- ARGV[5] the claim value the run must still hold, or ""
--
-- Returns the number of old runs dropped from the history, or -1 when the
-- claim no longer holds ARGV[5] (another replica took the tick over:
-- nothing is written, and the run must not start).
--
-- Safe to run twice (a retry after a lost reply, or a late copy of the
-- request): a run already recorded is left as it is, never pushed again
-- nor rewritten (a late copy must not turn a finished run back into a
-- running one).
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[5] then return -1 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4]) end
local cap = tonumber(ARGV[3])
local dropped = 0
while redis.call('LLEN', KEYS[2]) > cap do
  local old = redis.call('RPOP', KEYS[2])
  redis.call('HDEL', KEYS[1], old)
  dropped = dropped + 1
end
return dropped
