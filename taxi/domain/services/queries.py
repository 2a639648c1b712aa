"""Trips read by those who may see them: one trip, or a page of them newest first
(keyset cursors). The rows come from `taxi.domain.services.reads`, the rule from
`taxi.domain.offers`."""

from __future__ import annotations

import base64
import binascii
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Row, Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from taxi.core.db import SessionMaker, read_only
from taxi.domain.errors import BadUserInput, NotFound
from taxi.domain.models import Trip, TripStatus, User, UserGroup
from taxi.domain.offers import Bound, Viewer, offered_clause, visible_clause
from taxi.domain.positions import PositionStore
from taxi.domain.readmodels import TripView
from taxi.domain.services import reads, sessions

# The largest page a `first` may ask for (validation checks literals with it too).
MAX_FIRST = 100


def parse_trip_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("Trip not found.") from exc


@dataclass(frozen=True)
class Page:
    trips: list[TripView]
    cursors: list[str]
    has_next_page: bool
    total_count: int


def encode_cursor(created: datetime, trip_id: uuid.UUID) -> str:
    raw = f"{created.isoformat()}|{trip_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Only a position `encode_cursor` wrote: a foreign or forged text, or one naming a
    time the database cannot take (year 1 at +14:00 is before year 1 in UTC), is
    BAD_USER_INPUT, never an error from the database."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, trip_id = raw.split("|", 1)
        when, tid = datetime.fromisoformat(created), uuid.UUID(trip_id)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise BadUserInput("Invalid cursor.", fields={"after": ["Invalid cursor."]}) from exc
    # Written from a row: UTC, and exactly this text (what re-encodes to it).
    if when.utcoffset() != timedelta(0) or encode_cursor(when, tid) != cursor:
        raise BadUserInput("Invalid cursor.", fields={"after": ["Invalid cursor."]})
    return when, tid


async def list_trips(
    session: AsyncSession | AsyncConnection,
    *,
    positions: PositionStore,
    user: Viewer,
    statuses: Sequence[TripStatus] | None,
    first: int,
    after: str | None,
    signed_in: dict[str, Any] | None = None,
) -> Page:
    """`signed_in`: the caller's token check (sessions.Claimed.params), made by the
    page's own statement (its rows are read only where it holds: an empty page then
    proves nothing)."""
    if first < 0 or first > MAX_FIRST:
        raise BadUserInput(
            f"first must be between 0 and {MAX_FIRST}.",
            fields={"first": [f"Must be between 0 and {MAX_FIRST}."]},
        )
    params: dict[str, Any] = {"viewer": user.id, **(signed_in or {})}
    if statuses:
        params["statuses"] = list(statuses)
    if after:
        params["after_created"], params["after_id"] = decode_cursor(after)
    shape = (user.group is UserGroup.DRIVER, bool(statuses), bool(after), signed_in is not None)
    page_where, where = _clauses(*shape)
    loaded = await reads.load(
        session,
        page_where,
        positions=positions,
        limit=first,
        count=where,
        key=("list_trips", shape),
        params=params,
    )
    return Page(
        trips=loaded.trips,
        cursors=[encode_cursor(t.created, t.id) for t in loaded.trips],
        has_next_page=loaded.more,
        total_count=loaded.total or 0,
    )


@functools.cache
def _clauses(
    driver: bool, statuses: bool, after: bool, signed_in: bool
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    """The page's WHERE and the count's, with bind parameters (see `list_trips`)."""
    where = [visible_clause(Bound(UserGroup.DRIVER if driver else UserGroup.RIDER))]
    if statuses:
        where.append(col(Trip.status).in_(bindparam("statuses", expanding=True)))
    page_where = list(where)
    if after:
        created: BindParameter[datetime] = bindparam("after_created")
        trip_id: BindParameter[uuid.UUID] = bindparam("after_id")
        # Keyset pagination, newest first: stable while new trips arrive.
        page_where.append(
            or_(
                col(Trip.created) < created,
                and_(col(Trip.created) == created, col(Trip.id) < trip_id),
            )
        )
    if signed_in:
        page_where.append(sessions.SIGNED_IN)
    return page_where, where


@functools.cache
def one_visible(driver: bool) -> list[ColumnElement[bool]]:
    """One trip (`one_trip`) if the viewer (`viewer`) may see it; reads' statement for it
    is keyed `("get_trip", driver)` (trips._load_for_change reads it too)."""
    group = UserGroup.DRIVER if driver else UserGroup.RIDER
    return [col(Trip.id) == bindparam("one_trip"), visible_clause(Bound(group))]


# A trip's columns as one row, read as a Trip is (`row.status`, `row.driver_id`): what
# a lifecycle step checks before its conditional UPDATE, and a feed before it opens. Not
# a Trip: loading one through the session (the ORM's execution, an instance in its
# identity map) cost about three times the statement.
TripRow = Row[Any]


@functools.cache
def _row_statement(driver: bool, offered: bool) -> Select[Any]:
    """`trip_row`'s statement for a kind of viewer (the trip and the viewer bound), built
    once: every lifecycle step loads its trip, and building it cost more than running it.
    `offered`: a driver's pool alone (accepting), else what the viewer may see."""
    viewer = Bound(UserGroup.DRIVER if driver else UserGroup.RIDER)
    visible = offered_clause(viewer.id) if offered else visible_clause(viewer)
    return select(*reads.TRIPS.c).where(reads.TRIPS.c.id == bindparam("trip"), visible)


async def trip_row(
    session: AsyncSession | AsyncConnection, user: User, trip_id: str, *, offered: bool = False
) -> TripRow:
    """The trip's own row (not its parties, offers or car: `get_trip` has them), if the
    user may see it (`offered`: if it is in the driver's pool); NotFound otherwise."""
    statement = _row_statement(user.group is UserGroup.DRIVER, offered)
    params = {"trip": parse_trip_id(trip_id), "viewer": user.id}
    found = await (await reads.connection_of(session)).execute(statement, params)
    trip: TripRow | None = found.one_or_none()
    if trip is None:
        raise NotFound("Trip not found.")
    return trip


async def visible_trip(*, db: SessionMaker, user: User, trip_id: str) -> TripRow:
    """`trip_row` on a connection of its own: a check before a feed opens, and where a car
    is (its row and the position store: no parties, no offers)."""
    async with read_only(db) as connection:
        return await trip_row(connection, user, trip_id)


async def get_trip(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> TripView:
    tid = parse_trip_id(trip_id)
    async with read_only(db) as connection:
        found = (
            await reads.load(
                connection,
                one_visible(user.group is UserGroup.DRIVER),
                positions=positions,
                key=("get_trip", user.group is UserGroup.DRIVER),
                params={"one_trip": tid, "viewer": user.id},
            )
        ).trips
    if not found:
        raise NotFound("Trip not found.")
    return found[0]
