"""Users as read models, with drivers' ratings: built from Core rows, in one statement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import FromClause
from sqlmodel import col

from taxi.domain.models import Trip, TripStatus, User, UserGroup
from taxi.domain.readmodels import UserView, media_url

MIN_RATINGS = 3
USERS: FromClause = User.metadata.tables["user"]
# UserView's fields read from `user` as they are; the others are derived below.
COLUMNS = tuple(name for name in UserView.__dataclass_fields__ if name in USERS.c)


def ratings(driver_ids: Any) -> Select[tuple[int | None, Any, int]]:
    """Per driver among `driver_ids` (a list or a subquery), over completed, rated
    trips: (driver_id, avg, n), to join on driver_id."""
    return (
        select(
            col(Trip.driver_id).label("driver_id"),
            func.avg(col(Trip.rating)).label("avg"),
            func.count(col(Trip.rating)).label("n"),
        )
        .where(
            col(Trip.driver_id).in_(driver_ids),
            col(Trip.status) == TripStatus.COMPLETED,
            col(Trip.rating).is_not(None),
        )
        .group_by(col(Trip.driver_id))
    )


def columns(users: FromClause, prefix: str) -> list[ColumnElement[Any]]:
    """What `view` reads of a user, labelled `<prefix><name>`."""
    return [users.c[n].label(prefix + n) for n in (*COLUMNS, "photo")]


def view(row: Mapping[Any, Any], prefix: str, avg: Any = None, n: int | None = None) -> UserView:
    """The user in `row` (columns labelled by `columns`); `avg`, `n`: their ratings."""
    rated = row[prefix + "group"] is UserGroup.DRIVER and (n or 0) >= MIN_RATINGS
    return UserView(
        **{name: row[prefix + name] for name in COLUMNS},
        photo_url=media_url(row[prefix + "photo"]),
        rating=float(avg) if rated else None,
    )


async def user_view(session: AsyncSession, user: User) -> UserView:
    """One statement: the user's row and, for a driver, their ratings."""
    assert user.id is not None
    rated = ratings([user.id]).subquery()
    statement = (
        select(*columns(USERS, ""), rated.c.avg, rated.c.n)
        .select_from(USERS.outerjoin(rated, rated.c.driver_id == USERS.c.id))
        .where(USERS.c.id == user.id)
    )
    row = (await session.execute(statement)).mappings().one()
    return view(row, "", row["avg"], row["n"])
