"""Today's figures for the admin's home page: trips by status, drivers online, requests
that expired unaccepted.

"Today" is the UTC day: one day for every process and every operator, whatever the
server's time zone. Each figure is one grouped statement, not a row per trip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import func, select
from sqlmodel import col

from taxi.core.db import SessionMaker
from taxi.domain.models import CancelReason, Trip, TripStatus
from taxi.domain.positions import PositionStore


@dataclass(frozen=True, slots=True)
class Figures:
    since: datetime
    trips: dict[TripStatus, int]  # created today, every status present (0 when none)
    drivers_online: int
    requests_expired: int  # created today, CANCELED with NO_DRIVER_FOUND

    @property
    def trips_total(self) -> int:
        return sum(self.trips.values())


def start_of_today(now: datetime | None = None) -> datetime:
    return datetime.combine((now or datetime.now(UTC)).date(), time.min, tzinfo=UTC)


async def today(*, db: SessionMaker, positions: PositionStore) -> Figures:
    since = start_of_today()
    created_today = col(Trip.created) >= since
    async with db() as session:
        rows = await session.execute(
            select(col(Trip.status), func.count()).where(created_today).group_by(col(Trip.status))
        )
        counts = {TripStatus(status): int(n) for status, n in rows.all()}
        expired = await session.scalar(
            select(func.count()).where(
                created_today,
                col(Trip.status) == TripStatus.CANCELED,
                col(Trip.cancel_reason) == CancelReason.NO_DRIVER_FOUND,
            )
        )
    return Figures(
        since=since,
        trips={status: counts.get(status, 0) for status in TripStatus},
        drivers_online=await positions.online(),
        requests_expired=int(expired or 0),
    )
