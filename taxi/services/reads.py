"""Trips as read models, from one statement: the trips with their rider and driver and
the drivers' ratings (plus one for the offers of dispatched trips, when there are any),
Core rows straight into taxi/readmodels.py's classes; the cars' positions from the
position store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import FromClause

from taxi.models import Trip, TripStatus
from taxi.offers import offered_sets
from taxi.positions import Fix, PositionStore
from taxi.readmodels import PointView, TripView
from taxi.services import users

log = logging.getLogger(__name__)

# What an unreachable position store raises (Redis, or its socket).
STORE_DOWN = (RedisError, OSError)
UNDER_WAY = (TripStatus.STARTED, TripStatus.IN_PROGRESS)
TRIPS: FromClause = Trip.metadata.tables["trip"]
# TripView's fields read from `trip` as they are; the others are derived in `_view`.
COLUMNS = tuple(name for name in TripView.__dataclass_fields__ if name in TRIPS.c)
POINTS = ("pick_up_latitude", "pick_up_longitude", "drop_off_latitude", "drop_off_longitude")


@dataclass(frozen=True, slots=True)
class Loaded:
    trips: list[TripView]
    more: bool  # rows past `limit` exist
    total: int | None  # every row matching `where` (when counted)


async def load(
    session: AsyncSession,
    where: Sequence[ColumnElement[bool]],
    *,
    positions: PositionStore,
    limit: int | None = None,
    count: Sequence[ColumnElement[bool]] | None = None,
) -> Loaded:
    """The trips matching `where`, newest first, at most `limit`; with `count`, how
    many trips match it (one statement either way)."""
    page = (
        select(TRIPS)
        .where(*where)
        .order_by(TRIPS.c.created.desc(), TRIPS.c.id.desc())
        .limit(None if limit is None else limit + 1)
        .cte("page")
    )
    rated = users.ratings(select(page.c.driver_id)).cte("rated")
    rider, driver = users.USERS.alias("rider"), users.USERS.alias("driver")
    wanted: list[Any] = [page.c[n] for n in (*COLUMNS, "rider_id", "driver_id", *POINTS)]
    wanted += users.columns(rider, "r_") + users.columns(driver, "d_") + [rated.c.avg, rated.c.n]
    if count is not None:
        total = select(func.count()).select_from(TRIPS).where(*count).scalar_subquery()
        wanted.append(total.label("total"))
    statement = (
        select(*wanted)
        .select_from(
            page.outerjoin(rider, rider.c.id == page.c.rider_id)
            .outerjoin(driver, driver.c.id == page.c.driver_id)
            .outerjoin(rated, rated.c.driver_id == page.c.driver_id)
        )
        .order_by(page.c.created.desc(), page.c.id.desc())
    )
    rows = (await session.execute(statement)).mappings().all()
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    if count is None:
        counted = None
    elif rows:
        counted = int(rows[0]["total"])
    else:  # an empty page (past the end): the count alone
        counted = int(
            await session.scalar(select(func.count()).select_from(TRIPS).where(*count)) or 0
        )
    offered = await offered_sets(
        session, [r["id"] for r in rows if r["pick_up_latitude"] is not None]
    )
    fixes = await _locations(positions, [r["id"] for r in rows if r["status"] in UNDER_WAY])
    return Loaded([_view(r, offered, fixes) for r in rows], more, counted and int(counted))


def _view(
    row: RowMapping, offered: dict[uuid.UUID, tuple[int, ...]], fixes: dict[uuid.UUID, Fix]
) -> TripView:
    trip_id = row["id"]
    fix = fixes.get(trip_id)
    return TripView(
        **{name: row[name] for name in COLUMNS},
        rider=None if row["r_id"] is None else users.view(row, "r_"),
        driver=None if row["d_id"] is None else users.view(row, "d_", row["avg"], row["n"]),
        driver_location=None if fix is None else fix.view(),
        pick_up=PointView.of(row["pick_up_latitude"], row["pick_up_longitude"]),
        drop_off=PointView.of(row["drop_off_latitude"], row["drop_off_longitude"]),
        offered=offered.get(trip_id),
    )


async def _locations(positions: PositionStore, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]:
    """The cars' last positions; none while the store is unreachable: trips are still
    served from the database during a Redis outage (PROTOCOL.md), without positions."""
    if not trip_ids:
        return {}
    try:
        return await positions.trip_locations(trip_ids)
    except STORE_DOWN as exc:
        log.warning("position store unreachable; trips served without positions: %r", exc)
        return {}
