"""Trips as read models, from one statement: the trips with their rider and driver and
the drivers' ratings (plus one for the offers of dispatched trips, when there are any),
Core rows straight into taxi/domain/readmodels.py's classes; the cars' positions from the
position store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, ColumnElement, Row, RowMapping, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.expression import FromClause

from taxi.domain.models import UNDER_WAY, Trip, TripStatus
from taxi.domain.offers import Sets, offered_sets
from taxi.domain.positions import STORE_DOWN, Fix, PositionStore
from taxi.domain.readmodels import FareView, MoneyView, PointView, TripView
from taxi.domain.routes import Estimator
from taxi.domain.services import users

log = logging.getLogger(__name__)

TRIPS: FromClause = Trip.metadata.tables["trip"]
# TripView's fields read from `trip` as they are; the others are derived in `_view`.
COLUMNS = tuple(name for name in TripView.__dataclass_fields__ if name in TRIPS.c)
POINTS = ("pick_up_latitude", "pick_up_longitude", "drop_off_latitude", "drop_off_longitude")
# What `fare` and the ETAs are derived from.
RIDE = (
    "fare_surge",
    "fare_currency",
    "fare_quoted",
    "fare_final",
    "driven_meters",
    "picked_up_at",
    "ended_at",
)
# Read with the view, not part of it: who the trip's parties are and the quoted distance,
# what a status step checks and prices from (trips._load_for_change).
PARTIES = ("rider_id", "driver_id", "quoted_meters")


@dataclass(frozen=True, slots=True)
class Offers:
    """Trips' offered drivers and the drivers who gave them back (offers.offered_sets)."""

    offered: Sets
    released: Sets


# For views of trips past the pool (under way or ended) that go to their parties only:
# who was offered a trip matters while it is REQUESTED and in the event that takes it
# out of the pool (accept, cancel, expiry), which read theirs.
NO_OFFERS = Offers({}, {})


@dataclass(frozen=True, slots=True)
class Loaded:
    trips: list[TripView]
    more: bool  # rows past `limit` exist
    total: int | None  # every row matching `where` (when counted)


# Each trip with its rider and driver, and each driver's ratings: the page first (a
# CTE), then the ratings of the page's drivers only, one aggregate per driver (as
# correlated subqueries they cost two index scans per row: most of the statement).
_RIDER, _DRIVER = users.USERS.alias("rider"), users.USERS.alias("driver")
_RATED = TRIPS.alias("rated")
_NEWEST_FIRST = (TRIPS.c.created.desc(), TRIPS.c.id.desc())

# The bind parameter of a built statement's LIMIT (rows wanted, plus one).
PAGE_LIMIT = "page_limit"
# Trips by id (bind parameter `ids`, a list): `load(..., key=BY_IDS, params=by_ids(ids))`.
BY_IDS = "trips by id"
_BY_IDS = [TRIPS.c.id.in_(bindparam("ids", expanding=True))]
Built = tuple[Select[Any], Select[Any] | None]
# Statements by the caller's key (taxi/domain/services/trips.py: one per shape of `trips`).
_BUILT: dict[Hashable, Built] = {}


def _build(
    where: Sequence[ColumnElement[bool]],
    limit: bool,
    count: Sequence[ColumnElement[bool]] | None,
) -> Built:
    page_rows = select(TRIPS).where(*where).order_by(*_NEWEST_FIRST)
    if limit:
        page_rows = page_rows.limit(bindparam(PAGE_LIMIT))
    return _around(page_rows.cte("page"), count)


def _around(page: CTE, count: Sequence[ColumnElement[bool]] | None) -> Built:
    """The statement of the trips in `page` (a CTE of the trip table's rows)."""
    ratings = (
        select(
            _RATED.c.driver_id,
            func.avg(_RATED.c.rating).label("avg"),
            func.count(_RATED.c.rating).label("n"),
        )
        .where(
            _RATED.c.driver_id.in_(select(page.c.driver_id)),
            _RATED.c.status == TripStatus.COMPLETED,
            _RATED.c.rating.is_not(None),
        )
        .group_by(_RATED.c.driver_id)
        .cte("ratings")
    )
    wanted: list[ColumnElement[Any]] = [
        *(page.c[n] for n in (*COLUMNS, *POINTS, *RIDE, *PARTIES)),
        *users.columns(_RIDER, "r_"),
        *users.columns(_DRIVER, "d_"),
        ratings.c.avg,
        ratings.c.n,
    ]
    counting = None
    if count is not None:
        counting = select(func.count()).select_from(TRIPS).where(*count)
        # Its own `trip`, not the outer row's: one count for the whole statement.
        wanted.append(counting.correlate(None).scalar_subquery().label("total"))
    joined = (
        page.outerjoin(_RIDER, _RIDER.c.id == page.c.rider_id)
        .outerjoin(_DRIVER, _DRIVER.c.id == page.c.driver_id)
        .outerjoin(ratings, ratings.c.driver_id == page.c.driver_id)
    )
    newest_first = (page.c.created.desc(), page.c.id.desc())
    return select(*wanted).select_from(joined).order_by(*newest_first), counting


# `written`'s statements by the change they wrap.
_WRITTEN: dict[UpdateBase, Select[Any]] = {}


async def written(
    session: AsyncSession | AsyncConnection, change: UpdateBase, params: dict[str, Any]
) -> Sequence[RowMapping]:
    """Runs `change` (an INSERT or UPDATE of trips RETURNING all of their columns, built
    once by the caller) and reads what it wrote as `load` reads trips (`views` renders
    the rows); none when it wrote none. On PostgreSQL one statement: the change is the
    page's CTE, its rows as it left them with their parties as they stand (a statement,
    a round trip, less per accept and per request). SQLite has no change in a WITH: two."""
    connection = await connection_of(session)
    if connection.dialect.name == "sqlite":
        ids = [row["id"] for row in (await connection.execute(change, params)).mappings()]
        if not ids:
            return []
        read, _ = _statement(_BY_IDS, False, None, BY_IDS)
        return (await connection.execute(read, {"ids": ids})).mappings().all()
    statement = _WRITTEN.get(change)
    if statement is None:
        statement, _ = _around(change.cte("page"), None)
        _WRITTEN[change] = statement
    rows: Sequence[RowMapping] = (await connection.execute(statement, params)).mappings().all()
    return rows


async def by_ids(
    session: AsyncSession | AsyncConnection,
    ids: Sequence[uuid.UUID],
    *,
    positions: PositionStore,
    offers: Offers | None = None,
) -> Loaded:
    """The trips with these ids (no rule of who may see them: the caller's), newest
    first, through one statement built once."""
    return await load(
        session, _BY_IDS, positions=positions, key=BY_IDS, params={"ids": list(ids)}, offers=offers
    )


def _statement(
    where: Sequence[ColumnElement[bool]],
    limit: bool,
    count: Sequence[ColumnElement[bool]] | None,
    key: Hashable | None,
) -> Built:
    built = _BUILT.get(key) if key is not None else None
    if built is None:
        built = _build(where, limit, count)
        if key is not None:
            _BUILT[key] = built
    return built


async def load(
    session: AsyncSession | AsyncConnection,
    where: Sequence[ColumnElement[bool]],
    *,
    positions: PositionStore,
    limit: int | None = None,
    count: Sequence[ColumnElement[bool]] | None = None,
    key: Hashable | None = None,
    params: dict[str, Any] | None = None,
    offers: Offers | None = None,
) -> Loaded:
    """The trips matching `where`, newest first, at most `limit`; with `count`, how
    many trips match it (one statement either way). `key`: the statement is built
    once for it (`where` and `count` must then be the same, bind parameters in
    `params`), as building one cost more than executing it. `offers`: the trips' offers
    when the caller knows them (one statement less), else read."""
    statement, counting = _statement(where, limit is not None, count, key)
    values = dict(params or {})
    if limit is not None:
        values[PAGE_LIMIT] = limit + 1
    # Core rows: no ORM entities to build or track.
    connection = await connection_of(session)
    rows = (await connection.execute(statement, values)).mappings().all()
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    if counting is None:
        counted = None
    elif rows:
        counted = int(rows[0]["total"])
    else:  # an empty page (past the end): the count alone
        counted = await connection.scalar(counting, values)
    trips = await views(connection, rows, positions=positions, offers=offers)
    return Loaded(trips, more, counted and int(counted))


async def one(
    session: AsyncSession | AsyncConnection,
    where: Sequence[ColumnElement[bool]],
    *,
    key: Hashable,
    params: dict[str, Any],
) -> Row[Any] | None:
    """The one trip matching `where` as `load` reads it, as a row (its columns by name,
    PARTIES included), for a change to check and `views` to render afterwards; None:
    no such trip."""
    statement, _ = _statement(where, False, None, key)
    connection = await connection_of(session)
    return (await connection.execute(statement, params)).one_or_none()


async def views(
    session: AsyncSession | AsyncConnection,
    rows: Sequence[Mapping[Any, Any]],
    *,
    positions: PositionStore,
    offers: Offers | None = None,
) -> list[TripView]:
    """Rows read by `load`'s statement (or `one`'s, changed since) as TripViews, with
    their offers (read unless given) and their cars' positions."""
    # Offers matter for dispatched trips; a trip given back, for any trip still requested.
    if offers is None:
        wanted = [
            r["id"]
            for r in rows
            if r["pick_up_latitude"] is not None or r["status"] is TripStatus.REQUESTED
        ]
        offers = Offers(*await offered_sets(await connection_of(session), wanted))
    offered, released = offers.offered, offers.released
    fixes = await locations(positions, [r["id"] for r in rows if r["status"] in UNDER_WAY])
    return [_view(r, offered, released, fixes, positions.estimator) for r in rows]


async def connection_of(session: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection a session runs on (begun as the session begins), or itself."""
    return session if isinstance(session, AsyncConnection) else await session.connection()


def _view(
    row: Mapping[Any, Any],
    offered: dict[uuid.UUID, tuple[int, ...]],
    released: dict[uuid.UUID, tuple[int, ...]],
    fixes: dict[uuid.UUID, Fix],
    estimator: Estimator,
) -> TripView:
    trip_id = row["id"]
    fix = fixes.get(trip_id)
    pick_up = PointView.of(row["pick_up_latitude"], row["pick_up_longitude"])
    drop_off = PointView.of(row["drop_off_latitude"], row["drop_off_longitude"])
    status = row["status"]
    # The next stop's ETA from the car's last position (STARTED: until it arrived).
    heading_for = (
        pick_up
        if status is TripStatus.STARTED and row["arrived_at"] is None
        else drop_off
        if status is TripStatus.IN_PROGRESS
        else None
    )
    eta = None
    if fix is not None and heading_for is not None:
        eta = estimator.eta(fix=fix, stop=(heading_for.latitude, heading_for.longitude))
    return TripView(
        **{name: row[name] for name in COLUMNS},
        rider=None if row["r_id"] is None else users.view(row, "r_"),
        driver=None if row["d_id"] is None else users.view(row, "d_", row["avg"], row["n"]),
        driver_location=None if fix is None else fix.view(),
        pick_up=pick_up,
        drop_off=drop_off,
        offered=offered.get(trip_id, ()) if pick_up is not None else None,
        released=released.get(trip_id, ()),
        fare=_fare(row),
        pick_up_eta_seconds=eta if status is TripStatus.STARTED else None,
        drop_off_eta_seconds=eta if status is TripStatus.IN_PROGRESS else None,
    )


def _fare(row: Mapping[Any, Any]) -> FareView:
    currency = row["fare_currency"]
    picked_up, ended = row["picked_up_at"], row["ended_at"]
    completed = row["status"] is TripStatus.COMPLETED and picked_up and ended
    return FareView(
        quoted=MoneyView.of(row["fare_quoted"], currency),
        final=MoneyView.of(row["fare_final"], currency),
        distance_meters=row["driven_meters"] if completed else None,
        duration_seconds=round((ended - picked_up).total_seconds()) if completed else None,
        surge=row["fare_surge"],
    )


async def locations(positions: PositionStore, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]:
    """The cars' last positions; none while the store is unreachable: trips are still
    served from the database during a Redis outage (PROTOCOL.md), without positions."""
    if not trip_ids:
        return {}
    try:
        return await positions.trip_locations(trip_ids)
    except STORE_DOWN as exc:
        log.warning("position store unreachable; trips served without positions: %r", exc)
        return {}
