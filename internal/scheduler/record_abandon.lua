-- record_abandon.lua: mark a run abandoned, if it is still in the running
-- index (its replica died; the caller checked that its lock has expired).
--
-- KEYS[1] running index  KEYS[2] runs hash
-- ARGV[1] run id  ARGV[2] record JSON (status abandoned)
--
-- Returns 1 when marked, 0 when the run had finished meanwhile.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
