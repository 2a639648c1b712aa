"""The position store on Redis (REDIS_URL): GEOADD/GEOSEARCH over available drivers, a
sorted set of when each was last seen (freshness), hashes of state and last positions.

Every key shares one hash tag, `{<prefix>:geo}`, and each change is one script
(taxi/domain/positions_scripts.py), one round trip, atomic: a report can never index a
driver that went offline or on a trip meanwhile."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.exceptions import NoScriptError

from taxi.core.broadcast import RedisClient
from taxi.domain.positions import (
    ENDED_KEEP,
    Availability,
    DriverStatus,
    Fix,
    Nearby,
    Report,
    distance,
    geo_latitude,
)
from taxi.domain.positions_scripts import END, OFFLINE, PRUNE, REPORT, START

# A search asks for this many more candidates than it needs (stale or excluded ones are
# dropped after), and doubles the count until it has enough or the radius is exhausted.
SEARCH_SLACK = 8


def _status(raw: str | None) -> DriverStatus:
    if not raw:
        return DriverStatus(Availability.OFFLINE)
    if raw == "A":
        return DriverStatus(Availability.AVAILABLE)
    trip, rider = raw[2:].split(",", 1)[0].split(":")
    return DriverStatus(Availability.ON_TRIP, uuid.UUID(trip), int(rider) or None)


class RedisPositions:
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self.redis = redis
        tag = f"{{{prefix}:geo}}"
        self.state, self.fixes, self.avail = f"{tag}:state", f"{tag}:fix", f"{tag}:avail"
        self.seen, self.trips = f"{tag}:seen", f"{tag}:trips"
        self.epochs, self.ended = f"{tag}:epoch", f"{tag}:ended"
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

    async def go_offline(self, *, driver_id: int) -> None:
        await self._offline(
            keys=[self.state, self.fixes, self.avail, self.seen, self.epochs], args=[driver_id]
        )

    async def status(self, *, driver_id: int) -> tuple[DriverStatus, Fix | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.state, str(driver_id))
            pipe.hget(self.fixes, str(driver_id))
            pipe.hget(self.epochs, str(driver_id))
            raw, fix, epoch = await pipe.execute()
        state = replace(_status(raw), epoch=int(epoch or 0))
        if state.availability is Availability.OFFLINE or fix is None:
            return state, None
        return state, Fix.decode(fix)

    async def start_trip(
        self, *, driver_id: int, trip_id: uuid.UUID, rider_id: int | None, epoch: int
    ) -> bool:
        applied = await self._start(
            keys=[self.state, self.avail, self.seen, self.epochs, self.ended],
            args=[driver_id, str(trip_id), rider_id or 0, epoch],
        )
        return bool(applied)

    async def end_trip(self, *, driver_id: int, trip_id: uuid.UUID) -> None:
        await self._end(
            keys=[self.state, self.fixes, self.avail, self.seen, self.trips, self.ended],
            args=[driver_id, str(trip_id), time.time()],
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
        removed: Any = await self._prune(
            keys=[self.avail, self.seen, self.ended], args=[fresh_after, time.time() - ENDED_KEEP]
        )
        return int(removed)
