"""The Lua scripts of the Redis position store (taxi/domain/positions_redis.py): each
change is one script, one round trip, atomic. Every key they name shares one hash tag,
so each script touches one Redis Cluster slot.

A driver's `state` is `A` (available) or `T:` and the trips they drive, newest first
(`T:<trip>:<rider>,<trip>:<rider>`); `epoch` counts their goOfflines; `ended` is a
sorted set of `<driver>:<trip>` by when it ended. START, END and OFFLINE are the
order-independent trip changes that taxi/domain/positions.py describes.

Per trip, beside its last position (`trips`): its `stage` (`P`, `A` or `D`, and the next
stop: `P:<lat>:<lon>`), the metres `driven` while IN_PROGRESS, and whether its arrival
waits to be recorded (`arrivals`, a set)."""

from __future__ import annotations

# Metres between two points (the sphere of taxi.domain.positions.distance), and where a
# stored fix is.
GEOMETRY = """
local function dist(lat1, lon1, lat2, lon2)
  local r = math.pi / 180
  local a = math.sin((lat2 - lat1) * r / 2) ^ 2
    + math.cos(lat1 * r) * math.cos(lat2 * r) * math.sin((lon2 - lon1) * r / 2) ^ 2
  return 2 * 6372797.560856 * math.asin(math.min(1, math.sqrt(a)))
end
local function at(fix)
  local lat, lon = string.match(fix, '^([^,]*),([^,]*),')
  return tonumber(lat), tonumber(lon)
end
"""

# A position of a trip's car (MemoryPositions._on_trip is the same rule): while heading
# for the drop-off the step from the previous position adds to the driven distance; while
# heading for the pick-up, the first position within `arrival` metres of it turns the
# stage to arrived and queues the trip for the arrival's record, once. Returns the
# trip's stage, with "!" appended when this position arrived ("" without a stage).
ON_TRIP = (
    GEOMETRY
    + """
local function on_trip(trips, stages, driven, arrivals, arrival, trip, f)
  local prev = redis.call('HGET', trips, trip)
  redis.call('HSET', trips, trip, f)
  local st = redis.call('HGET', stages, trip)
  if not st then return '' end
  local stage, tlat, tlon = string.match(st, '^(%a):([^:]*):([^:]*)$')
  local lat, lon = at(f)
  if stage == 'D' and prev then
    local plat, plon = at(prev)
    redis.call('HINCRBYFLOAT', driven, trip, dist(plat, plon, lat, lon))
  elseif stage == 'P' and tlat ~= ''
    and dist(lat, lon, tonumber(tlat), tonumber(tlon)) <= arrival then
    st = 'A:' .. tlat .. ':' .. tlon
    redis.call('HSET', stages, trip, st)
    redis.call('SADD', arrivals, trip)
    return st .. '!'
  end
  return st
end
"""
)

# KEYS: state, fixes, avail (geo), seen (zset), trips, stages, driven, arrivals. ARGV:
# arrival metres, the index's latitude limit, then the reports in ONE argument, a line
# each: "<driver> <fix> <online 1/0>" (the fix as Fix.encode writes it: "lat,lon,heading,
# at"). One argument, not six per report: redis-py packs each argument in Python, and
# 3,000 of them per batch cost ~5 % of a rush-hour server's CPU. Returns each driver's
# state, a line each, in order: "A" (available), "T:...|<stage>" (on trips: the newest is
# the one reported to, ON_TRIP's answer after the bar), "" (offline: nothing stored).
REPORT = (
    ON_TRIP
    + """
local arrival, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for d, f, online in string.gmatch(ARGV[3], '(%d+) (%S+) (%d)') do
  local s = redis.call('HGET', KEYS[1], d)
  if not s and online == '1' then
    s = 'A'
    redis.call('HSET', KEYS[1], d, s)
  end
  if not s then
    s = ''
  else
    redis.call('HSET', KEYS[2], d, f)
    if s == 'A' then
      -- The fix's own text goes to GEOADD and ZADD (a Lua number would be rounded to 14
      -- digits); only a latitude past the index's limit is replaced by the limit.
      local lat, lon, at = string.match(f, '^([^,]*),([^,]*),[^,]*,([^,]*)$')
      local n = tonumber(lat)
      if n > limit then lat = ARGV[2] elseif n < -limit then lat = '-' .. ARGV[2] end
      redis.call('GEOADD', KEYS[3], lon, lat, d)
      redis.call('ZADD', KEYS[4], at, d)
    else
      local trip = string.match(s, '^T:([^:]+)')
      s = s .. '|' .. on_trip(KEYS[5], KEYS[6], KEYS[7], KEYS[8], arrival, trip, f)
    end
  end
  out[#out + 1] = s
end
return table.concat(out, '\\n')
"""
)

# KEYS: state, fixes, avail, seen, epoch. ARGV: driver.
OFFLINE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
"""

# KEYS: fixes, trips, stages, driven, arrivals. ARGV: driver, trip, fix, arrival metres.
# Returns ON_TRIP's answer.
TRIP_FIX = (
    ON_TRIP
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return on_trip(KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[4]), ARGV[2], ARGV[3])
"""
)

# KEYS: stages, driven, arrivals. ARGV: trip, drop-off lat, drop-off lon.
DRIVE = """
redis.call('HSET', KEYS[1], ARGV[1], 'D:' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], 0)
redis.call('SREM', KEYS[3], ARGV[1])
"""

# KEYS: state, avail, seen, epoch, ended, stages. ARGV: driver, trip, rider, epoch,
# pick-up lat, pick-up lon. Returns 1 when applied.
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
redis.call('HSETNX', KEYS[6], ARGV[2], 'P:' .. ARGV[5] .. ':' .. ARGV[6])
return 1
"""

# KEYS: state, fixes, avail, seen, trips, ended, stages, driven, arrivals. ARGV: driver,
# trip, now.
END = """
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[7], ARGV[2])
redis.call('HDEL', KEYS[8], ARGV[2])
redis.call('SREM', KEYS[9], ARGV[2])
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

# The supply near a point, as RedisPositions.nearest finds it (the same search, the same
# filters) but counted here: a market's surge needs how many cars and the nearest one (a
# request's first wave the nearest few), and reading up to 200 drivers' fixes back cost
# ~4 ms of the server's CPU per request.
# KEYS: avail (geo), seen (zset), fixes. ARGV: longitude, the index's latitude, the
# latitude, radius metres, cap, fresh_after, slack, k. Returns {count (at most cap), then
# member and fix of each of the k nearest, nearest first}.
SUPPLY = (
    GEOMETRY
    + """
local lon, lat, radius = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, fresh, k = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8])
local want = cap + tonumber(ARGV[7])
while true do
  local members = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
    'BYRADIUS', ARGV[4], 'm', 'ASC', 'COUNT', want)
  local near = {}
  for _, m in ipairs(members) do
    local seen = redis.call('ZSCORE', KEYS[2], m)
    local f = seen and tonumber(seen) >= fresh and redis.call('HGET', KEYS[3], m)
    if f then
      local flat, flon = at(f)
      local d = dist(lat, lon, flat, flon)
      if d <= radius then near[#near + 1] = {d, tonumber(m), m, f} end
    end
  end
  if #near >= cap or #members < want then
    table.sort(near, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    local out = {math.min(#near, cap)}
    for i = 1, math.min(k, cap, #near) do
      out[#out + 1] = near[i][3]
      out[#out + 1] = near[i][4]
    end
    return out
  end
  want = want * 2
end
"""
)
