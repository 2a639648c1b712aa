"""The position store: where drivers are and whether they take offers. Ephemeral by
design (PROTOCOL.md): never a PostgreSQL row per report. This module holds the shared
shapes and the in-process store of the embedded default; taxi/domain/positions_redis.py holds
the Redis one (GEOADD/GEOSEARCH), used whenever REDIS_URL is set.

Availability is kept here too (the per-report path must know it without a SQL read), but
PostgreSQL is the truth: a driver is ON_TRIP exactly while a trip they accepted is STARTED
or IN_PROGRESS there, and this store follows the rows (taxi/domain/availability.py says
how). Its trip changes are written so that their order does not matter: a trip started
here after it ended (a late after-commit step) is refused by a tombstone of that
(driver, trip), one started before a later goOffline by the driver's epoch, and a driver
holds a set of trips, so that a late step of one trip never overwrites another."""

from __future__ import annotations

import enum
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from taxi.core.cluster import REDIS_ERRORS
from taxi.domain.readmodels import LocationView

# What an unreachable position store raises (Redis, or its socket; on a Redis Cluster
# mid-failover also RedisClusterException, e.g. SlotNotCoveredError, not a RedisError).
STORE_DOWN = REDIS_ERRORS

if TYPE_CHECKING:
    from taxi.domain.routes import Estimator

# Redis computes GEO distances on this sphere; the in-process store uses the same one,
# so both backends rank drivers alike.
EARTH_RADIUS = 6372797.560856
METERS_PER_DEGREE = EARTH_RADIUS * math.pi / 180
# Redis GEO cannot index beyond these latitudes (Web Mercator); positions nearer the
# poles are kept as reported and indexed at the limit.
GEO_MAX_LATITUDE = 85.05112878
# The in-process grid: cells of 0.01 degree (~1.1 km north-south).
CELL = 0.01
# How long an ended (driver, trip) is remembered, so that its late start is refused: far
# longer than any request's after-commit step can be delayed; pruned after.
ENDED_KEEP = 3600.0


class Availability(enum.Enum):
    OFFLINE = "OFFLINE"
    AVAILABLE = "AVAILABLE"
    ON_TRIP = "ON_TRIP"


class Stage(enum.Enum):
    """Where a trip's car is heading, kept per trip beside its positions: each report
    gets its ETA, the arrival and the driven distance without a SQL read."""

    PICK_UP = "P"  # STARTED, not yet arrived
    ARRIVED = "A"  # STARTED, within ARRIVAL_METERS of the pick-up once
    DROP_OFF = "D"  # IN_PROGRESS: reports add to the driven distance


Point = tuple[float, float]


# Not frozen: one or more per position report, and a frozen dataclass's __init__ costs
# four times a plain one's (object.__setattr__ per field).
@dataclass(slots=True)
class Fix:
    """One reported position; `at` in epoch seconds."""

    latitude: float
    longitude: float
    heading: float | None
    at: float

    def view(self) -> LocationView:
        return LocationView(
            latitude=self.latitude,
            longitude=self.longitude,
            heading=self.heading,
            recorded_at=datetime.fromtimestamp(self.at, UTC),
        )

    def encode(self) -> str:
        heading = "" if self.heading is None else repr(self.heading)
        return f"{self.latitude!r},{self.longitude!r},{heading},{self.at!r}"

    @classmethod
    def decode(cls, text: str) -> Fix:
        lat, lon, heading, at = text.split(",")
        return cls(float(lat), float(lon), float(heading) if heading else None, float(at))


@dataclass(slots=True)  # not frozen: as Fix
class Report:
    """A position to record. `online` turns an OFFLINE driver AVAILABLE (goOnline);
    without it an OFFLINE driver stays OFFLINE and nothing is stored."""

    driver_id: int
    fix: Fix
    online: bool


@dataclass(frozen=True, slots=True)
class DriverStatus:
    availability: Availability
    trip_id: uuid.UUID | None = None
    rider_id: int | None = None  # the trip's rider: who may watch the car
    # Bumped by every goOffline: a trip start read before it cannot land after it.
    epoch: int = 0
    # The trip's stage and next stop (when it has one), as of this report; `arrived`: this
    # very report reached the pick-up (once per trip).
    stage: Stage | None = None
    target: Point | None = None
    arrived: bool = False


@dataclass(frozen=True, slots=True)
class Nearby:
    driver_id: int
    fix: Fix
    distance: float


def distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(a)))


def geo_latitude(latitude: float) -> float:
    return max(-GEO_MAX_LATITUDE, min(GEO_MAX_LATITUDE, latitude))


class PositionStore(Protocol):
    """Also carries how ETAs are estimated and how close counts as arrived: everything that
    reads positions (trip reads, reports, nearbyCars) has the store at hand."""

    estimator: Estimator
    arrival_meters: float

    async def report_many(self, reports: Sequence[Report]) -> list[DriverStatus]:
        """Record positions (one driver at most once): each driver's state, in order.
        One call per event-loop pass (taxi/domain/reports.py), one round trip."""

    async def go_offline(self, *, driver_id: int) -> None:
        """OFFLINE, position and trips forgotten, epoch bumped: whatever the state. The
        caller decides whether the driver may (taxi/domain/availability.py)."""

    async def status(self, *, driver_id: int) -> tuple[DriverStatus, Fix | None]: ...

    async def start_trip(
        self,
        *,
        driver_id: int,
        trip_id: uuid.UUID,
        rider_id: int | None,
        epoch: int,
        pick_up: Point | None = None,
    ) -> bool:
        """ON_TRIP, unless this (driver, trip) ended already or the driver's epoch is no
        longer `epoch` (read before the accept committed); True when applied. The trip
        heads for `pick_up` (unless it has a stage already)."""

    async def drive(self, *, trip_id: uuid.UUID, drop_off: Point | None) -> None:
        """IN_PROGRESS: heading for the drop-off; the driven distance counts from here."""

    async def end_trip(self, *, driver_id: int, trip_id: uuid.UUID) -> None:
        """The trip leaves the driver (remembered as ended); with no trip left, AVAILABLE
        again at the last position. The trip's location, stage, driven distance and
        pending arrival are forgotten."""

    async def set_trip_location(
        self, *, driver_id: int, trip_id: uuid.UUID, fix: Fix
    ) -> DriverStatus:
        """reportLocation: the trip's driverLocation (and the driver's position), with the
        same stage rules as a report; returns the trip's stage."""

    async def driven(self, *, trip_id: uuid.UUID) -> float:
        """Metres driven so far while IN_PROGRESS."""

    async def arrivals(self, *, limit: int) -> list[uuid.UUID]:
        """Trips whose car reached the pick-up, not yet recorded (`arrival_recorded`)."""

    async def arrival_recorded(self, *, trip_ids: list[uuid.UUID]) -> None: ...

    async def trip_locations(self, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]: ...

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
        """AVAILABLE drivers with a position newer than `fresh_after`, nearest first."""

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
        """How many drivers `nearest` would find (at most `cap`), and the `nearest` nearest
        of them, nearest first: counted where the positions are. (A request's first wave
        searches the same circle: one round trip serves both.)"""

    async def prune(self, *, fresh_after: float) -> int:
        """Drop stale positions from the index (they are filtered anyway), and ended trips
        older than ENDED_KEEP; returns how many positions."""

    async def online(self) -> int:
        """How many drivers are not OFFLINE (available or on a trip): the admin's figure."""


_MISSING = object()
_OFFLINE = DriverStatus(Availability.OFFLINE)


def _cell(latitude: float, longitude: float) -> tuple[int, int]:
    return math.floor(latitude / CELL), math.floor(longitude / CELL)


class MemoryPositions:
    """The embedded default (one process): dicts and a grid of ~1 km cells, so a
    search looks at the cells within the radius, not at every driver."""

    def __init__(self, *, estimator: Estimator, arrival_meters: float) -> None:
        self.estimator = estimator
        self.arrival_meters = arrival_meters
        self._stages: dict[uuid.UUID, tuple[Stage, Point | None]] = {}
        self._driven: dict[uuid.UUID, float] = {}
        self._arrivals: set[uuid.UUID] = set()
        self._state: dict[int, DriverStatus] = {}  # online drivers, derived from below
        self._on: dict[int, dict[uuid.UUID, int | None]] = {}  # driver -> trip -> rider
        self._epochs: dict[int, int] = {}
        self._ended: dict[tuple[int, uuid.UUID], float] = {}
        self._fixes: dict[int, Fix] = {}
        self._cells: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        self._indexed: dict[int, tuple[int, int]] = {}  # available driver -> their cell
        self._trips: dict[uuid.UUID, Fix] = {}

    def _index(self, driver_id: int, fix: Fix | None) -> None:
        old = self._indexed.pop(driver_id, None)
        if old is not None:
            self._cells[old].discard(driver_id)
            if not self._cells[old]:
                del self._cells[old]
        if fix is not None:
            cell = self._indexed[driver_id] = _cell(fix.latitude, fix.longitude)
            self._cells[cell].add(driver_id)

    def _status(self, driver_id: int) -> DriverStatus:
        return self._state.get(driver_id, _OFFLINE)

    async def report_many(self, reports: Sequence[Report]) -> list[DriverStatus]:
        return [self._report(r.driver_id, r.fix, r.online) for r in reports]

    def _report(self, driver_id: int, fix: Fix, online: bool) -> DriverStatus:
        state = self._status(driver_id)
        if state.availability is Availability.OFFLINE:
            if not online:
                return state
            state = self._state[driver_id] = DriverStatus(Availability.AVAILABLE)
        self._fixes[driver_id] = fix
        if state.availability is Availability.AVAILABLE:
            self._index(driver_id, fix)
        elif state.trip_id is not None:
            state = self._on_trip(state, state.trip_id, fix)
        return state

    def _on_trip(self, state: DriverStatus, trip_id: uuid.UUID, fix: Fix) -> DriverStatus:
        """A position of a trip's car: the driven distance, or the arrival (the Redis
        store's ON_TRIP script is the same rule)."""
        previous = self._trips.get(trip_id)
        self._trips[trip_id] = fix
        stage, target = self._stages.get(trip_id, (None, None))
        if stage is Stage.DROP_OFF and previous is not None:
            step = distance(previous.latitude, previous.longitude, fix.latitude, fix.longitude)
            self._driven[trip_id] = self._driven.get(trip_id, 0.0) + step
        elif stage is Stage.PICK_UP and target is not None:
            if distance(fix.latitude, fix.longitude, *target) <= self.arrival_meters:
                self._stages[trip_id] = (Stage.ARRIVED, target)
                self._arrivals.add(trip_id)
                return replace(state, stage=Stage.ARRIVED, target=target, arrived=True)
        return replace(state, stage=stage, target=target)

    async def go_offline(self, *, driver_id: int) -> None:
        self._state.pop(driver_id, None)
        self._on.pop(driver_id, None)
        self._fixes.pop(driver_id, None)
        self._index(driver_id, None)
        self._epochs[driver_id] = self._epochs.get(driver_id, 0) + 1

    async def online(self) -> int:
        return len(self._state)

    async def status(self, *, driver_id: int) -> tuple[DriverStatus, Fix | None]:
        state = replace(self._status(driver_id), epoch=self._epochs.get(driver_id, 0))
        fix = self._fixes.get(driver_id) if state.availability is not Availability.OFFLINE else None
        return state, fix

    async def start_trip(
        self,
        *,
        driver_id: int,
        trip_id: uuid.UUID,
        rider_id: int | None,
        epoch: int,
        pick_up: Point | None = None,
    ) -> bool:
        if (driver_id, trip_id) in self._ended or self._epochs.get(driver_id, 0) != epoch:
            return False
        trips = self._on.setdefault(driver_id, {})
        trips[trip_id] = rider_id
        self._stages.setdefault(trip_id, (Stage.PICK_UP, pick_up))
        self._state[driver_id] = DriverStatus(Availability.ON_TRIP, trip_id, rider_id)
        self._index(driver_id, None)
        return True

    async def drive(self, *, trip_id: uuid.UUID, drop_off: Point | None) -> None:
        self._stages[trip_id] = (Stage.DROP_OFF, drop_off)
        self._driven[trip_id] = 0.0
        self._arrivals.discard(trip_id)

    async def driven(self, *, trip_id: uuid.UUID) -> float:
        return self._driven.get(trip_id, 0.0)

    async def arrivals(self, *, limit: int) -> list[uuid.UUID]:
        return list(self._arrivals)[:limit]

    async def arrival_recorded(self, *, trip_ids: list[uuid.UUID]) -> None:
        self._arrivals.difference_update(trip_ids)

    async def end_trip(self, *, driver_id: int, trip_id: uuid.UUID) -> None:
        self._trips.pop(trip_id, None)
        self._stages.pop(trip_id, None)
        self._driven.pop(trip_id, None)
        self._arrivals.discard(trip_id)
        self._ended[(driver_id, trip_id)] = time.time()
        trips = self._on.get(driver_id, {})
        if trips.pop(trip_id, _MISSING) is _MISSING:
            return
        if trips:  # another trip (a late start of an older one): the newest stays shown
            newest, rider = next(reversed(trips.items()))
            self._state[driver_id] = DriverStatus(Availability.ON_TRIP, newest, rider)
            return
        del self._on[driver_id]
        self._state[driver_id] = DriverStatus(Availability.AVAILABLE)
        self._index(driver_id, self._fixes.get(driver_id))

    async def set_trip_location(
        self, *, driver_id: int, trip_id: uuid.UUID, fix: Fix
    ) -> DriverStatus:
        self._fixes[driver_id] = fix
        return self._on_trip(DriverStatus(Availability.ON_TRIP, trip_id), trip_id, fix)

    async def trip_locations(self, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]:
        return {t: self._trips[t] for t in trip_ids if t in self._trips}

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
        dlat = radius / METERS_PER_DEGREE
        dlon = radius / (METERS_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6))
        (la0, lo0), (la1, lo1) = (
            _cell(latitude - dlat, longitude - dlon),
            _cell(latitude + dlat, longitude + dlon),
        )
        if (la1 - la0 + 1) * (lo1 - lo0 + 1) > len(self._cells):
            candidates = list(self._indexed)  # fewer occupied cells than cells to visit
        else:
            candidates = [
                d
                for la in range(la0, la1 + 1)
                for lo in range(lo0, lo1 + 1)
                for d in self._cells.get((la, lo), ())
            ]
        found = []
        for driver in candidates:
            fix = self._fixes[driver]
            if driver in exclude or fix.at < fresh_after:
                continue
            meters = distance(latitude, longitude, fix.latitude, fix.longitude)
            if meters <= radius:
                found.append(Nearby(driver, fix, meters))
        found.sort(key=lambda n: (n.distance, n.driver_id))
        return found[:count]

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
        found = await self.nearest(
            latitude=latitude,
            longitude=longitude,
            radius=radius,
            count=cap,
            fresh_after=fresh_after,
        )
        return len(found), found[:nearest]

    async def prune(self, *, fresh_after: float) -> int:
        horizon = time.time() - ENDED_KEEP
        self._ended = {k: at for k, at in self._ended.items() if at >= horizon}
        stale = [d for d in self._indexed if self._fixes[d].at < fresh_after]
        for driver in stale:
            self._index(driver, None)
        return len(stale)
