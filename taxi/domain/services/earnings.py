"""earnings(from, to): what a driver's COMPLETED trips earned, one aggregate query over
`ix_trip_driver_ended`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker
from taxi.domain.errors import BadUserInput, Forbidden
from taxi.domain.models import Trip, TripStatus, User, UserGroup

# A longer range is refused: the query stays an index range of bounded width.
MAX_EARNINGS_RANGE = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class EarningsView:
    trips: int
    total: int
    currency: str
    distance_meters: int


async def earnings(
    *, db: SessionMaker, settings: Settings, user: User, start: datetime, end: datetime
) -> EarningsView:
    """The driver's COMPLETED trips completed in [start, end)."""
    if user.group is not UserGroup.DRIVER:
        raise Forbidden("Only drivers have earnings.")
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end < start:
        raise BadUserInput("Invalid range.", fields={"to": ["Must not be before `from`."]})
    if end - start > MAX_EARNINGS_RANGE:
        raise BadUserInput("Invalid range.", fields={"to": ["At most 366 days after `from`."]})
    async with db() as session:
        row = (
            await session.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(col(Trip.fare_final)), 0),
                    func.coalesce(func.sum(col(Trip.driven_meters)), 0),
                ).where(
                    col(Trip.driver_id) == user.id,
                    col(Trip.status) == TripStatus.COMPLETED,
                    col(Trip.ended_at) >= start,
                    col(Trip.ended_at) < end,
                )
            )
        ).one()
    trips, total, meters = row
    return EarningsView(
        trips=trips, total=total or 0, currency=settings.fare_currency, distance_meters=meters or 0
    )
