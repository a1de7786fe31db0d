-- unclaim.lua: on a quorum of independent masters, take back a SET NX key
-- that an attempt created on too few masters to win, so that another
-- attempt can win a majority (a split vote leaves no winner otherwise).
--
-- KEYS[1] the SET NX key
-- ARGV[1] the attempt's value
--
-- Returns 1 when the key held the value and was deleted, 0 otherwise
-- (another value, or none: nothing is changed). Safe to run twice.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
