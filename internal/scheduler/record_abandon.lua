-- record_abandon.lua: mark a run abandoned, if it is still in the running
-- index (its replica died; the caller checked that its lock has expired,
-- or that the replica's incarnation is gone).
--
-- KEYS[1] running index  KEYS[2] runs hash
-- ARGV[1] run id  ARGV[2] record JSON (status abandoned)
--
-- Returns 1 when marked, 0 when the run had finished meanwhile. Safe to
-- run twice: a retry that finds its own record answers 1 again.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
