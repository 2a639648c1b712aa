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
from functools import lru_cache
from typing import Any

from redis.exceptions import NoScriptError

from taxi.core.broadcast import RedisClient
from taxi.domain.positions import (
    ENDED_KEEP,
    GEO_MAX_LATITUDE,
    Availability,
    DriverStatus,
    Fix,
    Nearby,
    Point,
    Report,
    Stage,
    distance,
    geo_latitude,
)
from taxi.domain.positions_scripts import (
    DRIVE,
    END,
    OFFLINE,
    PRUNE,
    REPORT,
    START,
    SUPPLY,
    TRIP_FIX,
)
from taxi.domain.routes import Estimator

# A search asks for this many more candidates than it needs (stale or excluded ones are
# dropped after), and doubles the count until it has enough or the radius is exhausted.
SEARCH_SLACK = 8


# Frozen: one object serves every report that answers it (thousands a second).
_OFFLINE = DriverStatus(Availability.OFFLINE)
_AVAILABLE = DriverStatus(Availability.AVAILABLE)


def _status(raw: str | None) -> DriverStatus:
    if not raw:
        return _OFFLINE
    if raw == "A":
        return _AVAILABLE
    return _on_trip(raw)


# The drivers on trips report every few seconds and the script answers each the same
# string until the trip's stage changes: parsed (a UUID, floats, an enum) once each
# (~2 % of a rush-hour server's CPU parsed them per report). The status is frozen.
@lru_cache(maxsize=4096)
def _on_trip(raw: str) -> DriverStatus:
    trips, _, stage = raw.partition("|")
    trip, rider = trips[2:].split(",", 1)[0].split(":")
    return _staged(uuid.UUID(trip), int(rider) or None, stage)


def _staged(trip_id: uuid.UUID, rider_id: int | None, raw: str) -> DriverStatus:
    """ON_TRIP with the trip's stage as the script answers it ("P:<lat>:<lon>", "!"
    appended on arrival; "" without a stage)."""
    if not raw:
        return DriverStatus(Availability.ON_TRIP, trip_id, rider_id)
    arrived = raw.endswith("!")
    stage, lat, lon = raw.rstrip("!").split(":")
    target = (float(lat), float(lon)) if lat and lon else None
    return DriverStatus(
        Availability.ON_TRIP, trip_id, rider_id, stage=Stage(stage), target=target, arrived=arrived
    )


def _point(point: Point | None) -> list[str]:
    return ["", ""] if point is None else [repr(point[0]), repr(point[1])]


class RedisPositions:
    def __init__(
        self, redis: RedisClient, *, prefix: str, estimator: Estimator, arrival_meters: float
    ) -> None:
        self.redis = redis
        self.estimator = estimator
        self.arrival_meters = arrival_meters
        tag = f"{{{prefix}:geo}}"
        self.state, self.fixes, self.avail = f"{tag}:state", f"{tag}:fix", f"{tag}:avail"
        self.seen, self.trips = f"{tag}:seen", f"{tag}:trips"
        self.epochs, self.ended = f"{tag}:epoch", f"{tag}:ended"
        # Per trip: its stage and next stop, metres driven, an arrival to record.
        self.stages, self.driven_key = f"{tag}:stage", f"{tag}:driven"
        self.arrivals_key = f"{tag}:arrivals"
        self._ride = [self.stages, self.driven_key, self.arrivals_key]
        self._report = redis.register_script(REPORT)
        self._trip_fix = redis.register_script(TRIP_FIX)
        self._drive = redis.register_script(DRIVE)
        self._offline = redis.register_script(OFFLINE)
        self._start = redis.register_script(START)
        self._end = redis.register_script(END)
        self._prune = redis.register_script(PRUNE)
        self._supply = redis.register_script(SUPPLY)

    async def report_many(self, reports: Sequence[Report]) -> list[DriverStatus]:
        """A batch of reports (thousands of drivers, each every few seconds) in
        one script call, one round trip, one pooled connection: per report, Redis and
        redis-py cost a fraction of a call each."""
        lines = "\n".join(f"{r.driver_id} {r.fix.encode()} {1 if r.online else 0}" for r in reports)
        args: list[float | str] = [self.arrival_meters, repr(GEO_MAX_LATITUDE), lines]
        keys = (self.state, self.fixes, self.avail, self.seen, self.trips, *self._ride)
        try:
            # EVALSHA directly: the script object's call checks `isinstance(client,
            # Pipeline)` against a runtime Protocol first, ~1 % of a report's CPU.
            states = await self.redis.evalsha(self._report.sha, len(keys), *keys, *args)
        except NoScriptError:
            states = await self._report(keys=list(keys), args=args)  # loads it, once
        answers = states.split("\n")
        if len(answers) != len(reports):
            raise RuntimeError(f"{len(reports)} reports, {len(answers)} answers: {states!r}")
        return [_status(raw) for raw in answers]

    async def go_offline(self, *, driver_id: int) -> None:
        await self._offline(
            keys=[self.state, self.fixes, self.avail, self.seen, self.epochs], args=[driver_id]
        )

    async def online(self) -> int:
        # The state hash holds exactly the drivers that are not OFFLINE.
        return int(await self.redis.hlen(self.state))

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
        self,
        *,
        driver_id: int,
        trip_id: uuid.UUID,
        rider_id: int | None,
        epoch: int,
        pick_up: Point | None = None,
    ) -> bool:
        applied = await self._start(
            keys=[self.state, self.avail, self.seen, self.epochs, self.ended, self.stages],
            args=[driver_id, str(trip_id), rider_id or 0, epoch, *_point(pick_up)],
        )
        return bool(applied)

    async def drive(self, *, trip_id: uuid.UUID, drop_off: Point | None) -> None:
        await self._drive(keys=self._ride, args=[str(trip_id), *_point(drop_off)])

    async def end_trip(self, *, driver_id: int, trip_id: uuid.UUID) -> None:
        await self._end(
            keys=[
                self.state,
                self.fixes,
                self.avail,
                self.seen,
                self.trips,
                self.ended,
                *self._ride,
            ],
            args=[driver_id, str(trip_id), time.time()],
        )

    async def set_trip_location(
        self, *, driver_id: int, trip_id: uuid.UUID, fix: Fix
    ) -> DriverStatus:
        raw: Any = await self._trip_fix(
            keys=[self.fixes, self.trips, *self._ride],
            args=[driver_id, str(trip_id), fix.encode(), self.arrival_meters],
        )
        return _staged(trip_id, None, str(raw or ""))

    async def driven(self, *, trip_id: uuid.UUID) -> float:
        raw = await self.redis.hget(self.driven_key, str(trip_id))
        return float(raw) if raw else 0.0

    async def arrivals(self, *, limit: int) -> list[uuid.UUID]:
        raw: Any = await self.redis.srandmember(self.arrivals_key, limit)
        return [uuid.UUID(str(t)) for t in raw or ()]

    async def arrival_recorded(self, *, trip_ids: list[uuid.UUID]) -> None:
        if trip_ids:
            await self.redis.srem(self.arrivals_key, *(str(t) for t in trip_ids))

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

    async def supply(
        self,
        *,
        latitude: float,
        longitude: float,
        radius: float,
        cap: int,
        fresh_after: float,
        nearest: int = 1,
    ) -> tuple[int, list[Nearby]]:
        reply = await self._supply(
            keys=[self.avail, self.seen, self.fixes],
            args=[
                longitude,
                geo_latitude(latitude),
                latitude,
                radius,
                cap,
                fresh_after,
                SEARCH_SLACK,
                nearest,
            ],
        )
        found = []
        for member, raw in zip(reply[1::2], reply[2::2], strict=True):
            fix = Fix.decode(raw)
            meters = distance(latitude, longitude, fix.latitude, fix.longitude)
            found.append(Nearby(int(member), fix, meters))
        found.sort(key=lambda n: (n.distance, n.driver_id))  # as `nearest` orders them
        return int(reply[0]), found

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
