"""The position store on Redis (REDIS_URL): GEOADD/GEOSEARCH over available drivers, a
sorted set of when each was last seen (freshness), hashes of state and last positions.

Every key shares one hash tag, `{<prefix>:geo}`, so each script below touches one
Redis Cluster slot; and each change is one script, one round trip, atomic: a report
can never index a driver that went offline or on a trip meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from taxi.core.broadcast import RedisClient
from taxi.domain.positions import (
    Availability,
    DriverStatus,
    Fix,
    Nearby,
    Report,
    distance,
    geo_latitude,
)

# A search asks for this many more candidates than it needs (stale or excluded ones are
# dropped after), and doubles the count until it has enough or the radius is exhausted.
SEARCH_SLACK = 8

# KEYS: state, fixes, avail (geo), seen (zset), trips. ARGV: groups of six per report:
# driver, fix, lon, lat, at, online (1/0). Returns each driver's state: "A" (available),
# "T:<trip id>:<rider id>" (on a trip), "" (offline: nothing stored).
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

# KEYS: state, fixes, avail, seen. ARGV: driver.
OFFLINE = """
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s and s ~= 'A' then return s end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return false
"""

# KEYS: state, avail, seen. ARGV: driver, trip, rider.
START = """
redis.call('HSET', KEYS[1], ARGV[1], 'T:' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
"""

# KEYS: state, fixes, avail, seen, trips. ARGV: driver, trip.
END = """
redis.call('HDEL', KEYS[5], ARGV[2])
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s or string.match(s, '^T:([^:]+)') ~= ARGV[2] then return end
redis.call('HSET', KEYS[1], ARGV[1], 'A')
local f = redis.call('HGET', KEYS[2], ARGV[1])
if f then
  local lat, lon, _, at = string.match(f, '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  lat = math.max(-85.05112878, math.min(85.05112878, tonumber(lat)))
  redis.call('GEOADD', KEYS[3], lon, lat, ARGV[1])
  redis.call('ZADD', KEYS[4], at, ARGV[1])
end
"""

# KEYS: avail, seen. ARGV: fresh_after.
PRUNE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('ZREM', KEYS[2], unpack(stale))
end
return #stale
"""


def _status(raw: str | None) -> DriverStatus:
    if not raw:
        return DriverStatus(Availability.OFFLINE)
    if raw == "A":
        return DriverStatus(Availability.AVAILABLE)
    _, trip, rider = raw.split(":")
    return DriverStatus(Availability.ON_TRIP, uuid.UUID(trip), int(rider) or None)


class RedisPositions:
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        tag = f"{{{prefix}:geo}}"
        self.state, self.fixes, self.avail = f"{tag}:state", f"{tag}:fix", f"{tag}:avail"
        self.seen, self.trips = f"{tag}:seen", f"{tag}:trips"
        self._report = redis.register_script(REPORT)
        self._offline = redis.register_script(OFFLINE)
        self._start = redis.register_script(START)
        self._end = redis.register_script(END)
        self._prune = redis.register_script(PRUNE)

    async def report_many(self, reports: Sequence[Report]) -> list[DriverStatus]:
        """The reports of one loop pass (thousands of drivers, each every few seconds) in
        one script call, one round trip, one pooled connection: per report, Redis and
        redis-py cost a fraction of a call each."""
        args: list[Any] = []
        for r in reports:
            fix = r.fix
            lat = geo_latitude(fix.latitude)
            args += (r.driver_id, fix.encode(), fix.longitude, lat, fix.at, 1 if r.online else 0)
        keys = (self.state, self.fixes, self.avail, self.seen, self.trips)
        try:
            # EVALSHA directly: the script object's call checks `isinstance(client,
            # Pipeline)` against a runtime Protocol first, ~1 % of a report's CPU.
            states = await self.redis.evalsha(self._report.sha, len(keys), *keys, *args)
        except NoScriptError:
            states = await self._report(keys=list(keys), args=args)  # loads it, once
        return [_status(raw) for raw in states]

    async def go_offline(self, *, driver_id: int) -> DriverStatus:
        raw = await self._offline(
            keys=[self.state, self.fixes, self.avail, self.seen], args=[driver_id]
        )
        return _status(raw)

    async def status(self, *, driver_id: int) -> tuple[DriverStatus, Fix | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.state, str(driver_id))
            pipe.hget(self.fixes, str(driver_id))
            raw, fix = await pipe.execute()
        state = _status(raw)
        if state.availability is Availability.OFFLINE or fix is None:
            return state, None
        return state, Fix.decode(fix)

    async def start_trip(self, *, driver_id: int, trip_id: uuid.UUID, rider_id: int | None) -> None:
        await self._start(
            keys=[self.state, self.avail, self.seen],
            args=[driver_id, str(trip_id), rider_id or 0],
        )

    async def end_trip(self, *, driver_id: int, trip_id: uuid.UUID) -> None:
        await self._end(
            keys=[self.state, self.fixes, self.avail, self.seen, self.trips],
            args=[driver_id, str(trip_id)],
        )

    async def set_trip_location(self, *, driver_id: int, trip_id: uuid.UUID, fix: Fix) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.trips, str(trip_id), fix.encode())
            pipe.hset(self.fixes, str(driver_id), fix.encode())
            await pipe.execute()

    async def trip_locations(self, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]:
        if not trip_ids:
            return {}
        raw = await self.redis.hmget(self.trips, [str(t) for t in trip_ids])
        return {t: Fix.decode(str(r)) for t, r in zip(trip_ids, raw, strict=True) if r}

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius: float,
        count: int,
        fresh_after: float,
        exclude: frozenset[int] = frozenset(),
    ) -> list[Nearby]:
        want = count + len(exclude) + SEARCH_SLACK
        while True:
            members: list[Any] = await self.redis.geosearch(
                self.avail,
                longitude=longitude,
                latitude=geo_latitude(latitude),
                radius=radius,
                unit="m",
                sort="ASC",
                count=want,
            )
            found = await self._fresh(members, latitude, longitude, radius, fresh_after, exclude)
            if len(found) >= count or len(members) < want:
                return found[:count]
            want *= 2

    async def _fresh(
        self,
        members: list[str],
        latitude: float,
        longitude: float,
        radius: float,
        fresh_after: float,
        exclude: frozenset[int],
    ) -> list[Nearby]:
        if not members:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(self.seen, members)
            pipe.hmget(self.fixes, members)
            seen, fixes = await pipe.execute()
        found = []
        for member, at, raw in zip(members, seen, fixes, strict=True):
            driver = int(member)
            if at is None or at < fresh_after or raw is None or driver in exclude:
                continue
            fix = Fix.decode(raw)
            meters = distance(latitude, longitude, fix.latitude, fix.longitude)
            if meters <= radius:
                found.append(Nearby(driver, fix, meters))
        found.sort(key=lambda n: (n.distance, n.driver_id))
        return found

    async def prune(self, *, fresh_after: float) -> int:
        removed: Any = await self._prune(keys=[self.avail, self.seen], args=[fresh_after])
        return int(removed)
