"""Loading users (with drivers' ratings) in batches."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.models import Trip, TripStatus, User, UserGroup
from taxi.readmodels import UserView

MIN_RATINGS = 3


async def driver_ratings(session: AsyncSession, driver_ids: Iterable[int]) -> dict[int, float]:
    """Mean rating per driver over completed, rated trips; absent below MIN_RATINGS."""
    ids = list(set(driver_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(col(Trip.driver_id), func.avg(col(Trip.rating)), func.count(col(Trip.rating)))
        .where(
            col(Trip.driver_id).in_(ids),
            col(Trip.status) == TripStatus.COMPLETED,
            col(Trip.rating).is_not(None),
        )
        .group_by(col(Trip.driver_id))
    )
    return {d: float(avg) for d, avg, n in rows if d is not None and n >= MIN_RATINGS}


async def load_users(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, UserView]:
    """Two statements whatever the number of users: the rows, then the ratings."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    users = (await session.scalars(select(User).where(User.id.in_(wanted)))).all()  # type: ignore[union-attr]
    drivers = [u.id for u in users if u.group is UserGroup.DRIVER and u.id is not None]
    ratings = await driver_ratings(session, drivers)
    return {u.id: UserView.of(u, rating=ratings.get(u.id)) for u in users if u.id is not None}


async def user_view(session: AsyncSession, user: User) -> UserView:
    assert user.id is not None
    return (await load_users(session, [user.id]))[user.id]
