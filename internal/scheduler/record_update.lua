-- record_update.lua: replace a run's record; a final one also leaves the
-- running index.
--
-- KEYS[1] runs hash  KEYS[2] running index  KEYS[3] last-success key
-- KEYS[4] history list  KEYS[5] the run's claim key (checked only when ARGV[6] is not "")
-- ARGV[1] run id  ARGV[2] record JSON
-- ARGV[3] "running" (ARGV[4] is then the new running-index JSON), "final",
--         or "success" (final, and also the instance's last success)
-- ARGV[5] history cap
-- ARGV[6] the claim value the run must still hold, or ""
--
-- Returns 1, 0 when a final record found the run no longer in the
-- running index (another replica marked it abandoned meanwhile; the
-- record is replaced anyway, since this is what really happened), or -1
-- when the claim no longer holds ARGV[6] or a "running" update finds the
-- record neither waiting nor running (nothing is written; the run must
-- not start).
--
-- A record that is gone (Redis restarted without persistence during the
-- run) is added to the history again, so that no run vanishes. Safe to
-- run twice: the same record is written again. A "running" update (a run
-- that waited for its lock starts) applies only to a waiting record: a
-- record already running is a retry (1), and any other (abandoned while
-- this replica was away, or a late copy after the end) refuses it (-1, the
-- run must not start).
if ARGV[6] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[6] then return -1 end
local body = redis.call('HGET', KEYS[1], ARGV[1])
if body and ARGV[3] == 'running' then
  local status = cjson.decode(body).status
  if status == 'running' then return 1 end
  if status ~= 'waiting' then return -1 end
end
if not body then
  redis.call('LPUSH', KEYS[4], ARGV[1])
  while redis.call('LLEN', KEYS[4]) > tonumber(ARGV[5]) do
    redis.call('HDEL', KEYS[1], redis.call('RPOP', KEYS[4]))
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == 'running' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  return 1
end
if ARGV[3] == 'success' then redis.call('SET', KEYS[3], ARGV[2]) end
return redis.call('HDEL', KEYS[2], ARGV[1])
