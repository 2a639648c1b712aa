"""Who may see a trip: one rule, written twice side by side, as SQL (queries) and in
Python (live events and rows already loaded). A dispatched trip (one with a pick-up)
exists while REQUESTED only for the drivers it was offered to (rows of trip_offer);
a trip without a pick-up is in every driver's pool, as before dispatch existed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.models import Trip, TripOffer, TripStatus, User, UserGroup
from taxi.readmodels import TripView


def visible_clause(user: User) -> Any:
    """The rule as a WHERE clause over `trip`."""
    if user.group is not UserGroup.DRIVER:
        return col(Trip.rider_id) == user.id
    offered = exists().where(
        col(TripOffer.trip_id) == col(Trip.id), col(TripOffer.driver_id) == user.id
    )
    in_pool = and_(
        col(Trip.status) == TripStatus.REQUESTED,
        or_(col(Trip.pick_up_latitude).is_(None), offered),
    )
    return or_(in_pool, col(Trip.driver_id) == user.id)


def can_see(user_id: int, group: UserGroup, trip: TripView) -> bool:
    """The same rule on a view (events carry `offered`)."""
    if group is not UserGroup.DRIVER:
        return trip.rider_id == user_id
    if trip.driver_id == user_id:
        return True
    return trip.status is TripStatus.REQUESTED and was_offered(user_id, trip)


def was_offered(driver_id: int, trip: TripView) -> bool:
    """In the trip's pool: every driver's when not dispatched, else the offered ones'."""
    return trip.offered is None or driver_id in trip.offered


async def can_see_row(session: AsyncSession, user: User, trip: Trip) -> bool:
    """The same rule on a loaded row (one indexed lookup for a dispatched trip)."""
    if user.group is not UserGroup.DRIVER:
        return trip.rider_id == user.id
    if trip.driver_id == user.id:
        return True
    return trip.status is TripStatus.REQUESTED and await offered_to(session, trip, user)


async def offered_to(session: AsyncSession, trip: Trip, user: User) -> bool:
    if trip.pick_up_latitude is None:
        return True
    row = await session.get(TripOffer, (trip.id, user.id))
    return row is not None


async def offered_sets(
    session: AsyncSession, trips: Sequence[Trip]
) -> dict[uuid.UUID, tuple[int, ...]]:
    """Offered drivers of the dispatched trips among `trips`, in one query."""
    ids = [t.id for t in trips if t.pick_up_latitude is not None]
    out: dict[uuid.UUID, list[int]] = {i: [] for i in ids}
    if ids:
        rows = await session.execute(
            select(col(TripOffer.trip_id), col(TripOffer.driver_id)).where(
                col(TripOffer.trip_id).in_(ids)
            )
        )
        for trip_id, driver_id in rows:
            out[trip_id].append(driver_id)
    return {k: tuple(sorted(v)) for k, v in out.items()}
