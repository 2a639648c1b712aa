"""The Lua scripts of the Redis position store (taxi/domain/positions_redis.py): each
change is one script, one round trip, atomic. Every key they name shares one hash tag,
so each script touches one Redis Cluster slot.

A driver's `state` is `A` (available) or `T:` and the trips they drive, newest first
(`T:<trip>:<rider>,<trip>:<rider>`); `epoch` counts their goOfflines; `ended` is a
sorted set of `<driver>:<trip>` by when it ended. START, END and OFFLINE are the
order-independent trip changes that taxi/domain/positions.py describes."""

from __future__ import annotations

# KEYS: state, fixes, avail (geo), seen (zset), trips. ARGV: groups of six per report:
# driver, fix, lon, lat, at, online (1/0). Returns each driver's state: "A" (available),
# "T:..." (on trips: the newest is the one reported to), "" (offline: nothing stored).
REPORT = """
local out = {}
for i = 1, #ARGV, 6 do
  local d, f = ARGV[i], ARGV[i + 1]
  local s = redis.call('HGET', KEYS[1], d)
  if not s and ARGV[i + 5] == '1' then
    s = 'A'
    redis.call('HSET', KEYS[1], d, s)
  end
  if not s then
    s = ''
  else
    redis.call('HSET', KEYS[2], d, f)
    if s == 'A' then
      redis.call('GEOADD', KEYS[3], ARGV[i + 2], ARGV[i + 3], d)
      redis.call('ZADD', KEYS[4], ARGV[i + 4], d)
    else
      redis.call('HSET', KEYS[5], string.match(s, '^T:([^:]+)'), f)
    end
  end
  out[#out + 1] = s
end
return out
"""

# KEYS: state, fixes, avail, seen, epoch. ARGV: driver.
OFFLINE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
"""

# KEYS: state, avail, seen, epoch, ended. ARGV: driver, trip, rider, epoch. Returns 1
# when applied.
START = """
if redis.call('ZSCORE', KEYS[5], ARGV[1] .. ':' .. ARGV[2]) then return 0 end
if tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') ~= tonumber(ARGV[4]) then return 0 end
local entry = ARGV[2] .. ':' .. ARGV[3]
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s and string.sub(s, 1, 2) == 'T:' then
  for e in string.gmatch(string.sub(s, 3), '[^,]+') do
    if e == entry then return 1 end
  end
  s = 'T:' .. entry .. ',' .. string.sub(s, 3)
else
  s = 'T:' .. entry
end
redis.call('HSET', KEYS[1], ARGV[1], s)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: state, fixes, avail, seen, trips, ended. ARGV: driver, trip, now.
END = """
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1] .. ':' .. ARGV[2])
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s or string.sub(s, 1, 2) ~= 'T:' then return end
local kept, found = {}, false
for e in string.gmatch(string.sub(s, 3), '[^,]+') do
  if string.match(e, '^([^:]+)') == ARGV[2] then found = true else kept[#kept + 1] = e end
end
if not found then return end
if #kept > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], 'T:' .. table.concat(kept, ','))
  return
end
redis.call('HSET', KEYS[1], ARGV[1], 'A')
local f = redis.call('HGET', KEYS[2], ARGV[1])
if f then
  local lat, lon, _, at = string.match(f, '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  lat = math.max(-85.05112878, math.min(85.05112878, tonumber(lat)))
  redis.call('GEOADD', KEYS[3], lon, lat, ARGV[1])
  redis.call('ZADD', KEYS[4], at, ARGV[1])
end
"""

# KEYS: avail, seen, ended. ARGV: fresh_after, ended_before.
PRUNE = """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('ZREM', KEYS[2], unpack(stale))
end
return #stale
"""
