-- takeover.lua: give a claimed tick whose run never started to another
-- run (misfire: run_once). The claimer died, or was cut off, between
-- winning the claim and starting the process.
--
-- KEYS[1] claim key  KEYS[2] runs hash  KEYS[3] history list
-- ARGV[1] the claim value found (the old claimer's)  ARGV[2] the old run id
-- ARGV[3] the new claim value
-- ARGV[4] the old run's record JSON (abandoned, never started), written
--         when it has no record yet
-- ARGV[5] history cap  ARGV[6] text added to an existing record's reason
--
-- Returns 1 when the claim is now ARGV[3], 0 when the claim holds another
-- value (changed meanwhile), -1 when the old run may have started (its
-- record exists without never_started: true, which marks a run abandoned
-- while it waited or whose lease was lost before its start): the tick
-- must then never run again.
--
-- The old claimer writes its running record only while the claim still
-- holds its value (record_push.lua), so after this script it can never
-- start: exactly one of the two runs. Safe to run twice.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[3] then return 1 end
if cur ~= ARGV[1] then return 0 end
local body = redis.call('HGET', KEYS[2], ARGV[2])
if body then
  local rec = cjson.decode(body)
  if rec.never_started ~= true then return -1 end
  rec.reason = (rec.reason or '') .. ARGV[6]
  redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(rec))
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
  redis.call('LPUSH', KEYS[3], ARGV[2])
  while redis.call('LLEN', KEYS[3]) > tonumber(ARGV[5]) do
    redis.call('HDEL', KEYS[2], redis.call('RPOP', KEYS[3]))
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
return 1
