"""The ride lifecycle. Races are decided by the database: conditional UPDATEs and
partial unique indexes, never a read-then-write in Python."""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taxi import dispatch, metrics
from taxi.config import Settings
from taxi.db import SessionMaker
from taxi.errors import BadUserInput, Conflict, Forbidden, NotFound
from taxi.events import Publisher
from taxi.models import Trip, TripStatus, User, UserGroup, utcnow
from taxi.offers import can_see_row, offered_sets, offered_to, visible_clause
from taxi.positions import Fix, PositionStore
from taxi.readmodels import LocationView, PointView, TripView
from taxi.services.users import load_users

log = logging.getLogger(__name__)

# What an unreachable position store raises (Redis, or its socket).
STORE_DOWN = (RedisError, OSError)
MAX_PAGE = 100
MAX_ADDRESS = 255
UNDER_WAY = (TripStatus.STARTED, TripStatus.IN_PROGRESS)
NEXT_STATUS = {
    TripStatus.STARTED: TripStatus.IN_PROGRESS,
    TripStatus.IN_PROGRESS: TripStatus.COMPLETED,
}


# -- visibility: taxi/offers.py (one rule for SQL, rows and live events) ----------------


def parse_trip_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("Trip not found.") from exc


async def views(
    session: AsyncSession, trips: Sequence[Trip], *, positions: PositionStore
) -> list[TripView]:
    """Constant SQL whatever the number of trips: users and ratings in one batch, the
    offers of dispatched trips in one more; the cars' positions from the store."""
    users = await load_users(session, [t.rider_id for t in trips] + [t.driver_id for t in trips])
    offered = await offered_sets(session, trips)
    fixes = await _locations(positions, [t.id for t in trips if t.status in UNDER_WAY])
    return [
        TripView(
            id=t.id,
            created=t.created,
            updated=t.updated,
            pick_up_address=t.pick_up_address,
            drop_off_address=t.drop_off_address,
            status=t.status,
            rider=users.get(t.rider_id) if t.rider_id is not None else None,
            driver=users.get(t.driver_id) if t.driver_id is not None else None,
            driver_location=fixes[t.id].view() if t.id in fixes else None,
            rating=t.rating,
            pick_up=PointView.of(t.pick_up_latitude, t.pick_up_longitude),
            drop_off=PointView.of(t.drop_off_latitude, t.drop_off_longitude),
            offered=offered.get(t.id),
        )
        for t in trips
    ]


async def _locations(positions: PositionStore, trip_ids: list[uuid.UUID]) -> dict[uuid.UUID, Fix]:
    """The cars' last positions; none while the store is unreachable: trips are still
    served from the database during a Redis outage (PROTOCOL.md), without positions."""
    try:
        return await positions.trip_locations(trip_ids)
    except STORE_DOWN as exc:
        log.warning("position store unreachable; trips served without positions: %r", exc)
        return {}


async def _after_commit(what: str, change: Awaitable[None]) -> None:
    """A store change that follows a committed trip change: the commit stands whatever
    happens here (the state heals with the driver's next goOnline or trip)."""
    try:
        await change
    except STORE_DOWN as exc:
        log.warning("position store unreachable; %s not recorded: %r", what, exc)


async def _view(session: AsyncSession, trip: Trip, positions: PositionStore) -> TripView:
    return (await views(session, [trip], positions=positions))[0]


# -- queries ----------------------------------------------------------------------------


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
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, trip_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(trip_id)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise BadUserInput("Invalid cursor.", fields={"after": ["Invalid cursor."]}) from exc


async def list_trips(
    *,
    db: SessionMaker,
    positions: PositionStore,
    user: User,
    statuses: Sequence[TripStatus] | None,
    first: int,
    after: str | None,
) -> Page:
    if first < 0 or first > MAX_PAGE:
        raise BadUserInput(
            f"first must be between 0 and {MAX_PAGE}.",
            fields={"first": [f"Must be between 0 and {MAX_PAGE}."]},
        )
    where = [visible_clause(user)]
    if statuses:
        where.append(Trip.status.in_(list(statuses)))  # type: ignore[attr-defined]
    page_where = list(where)
    if after:
        created, trip_id = decode_cursor(after)
        # Keyset pagination, newest first: stable while new trips arrive.
        page_where.append(
            or_(Trip.created < created, and_(Trip.created == created, Trip.id < trip_id))  # type: ignore[arg-type,operator]
        )
    async with db() as session:
        rows = (
            await session.scalars(
                select(Trip)
                .where(*page_where)
                .order_by(Trip.created.desc(), Trip.id.desc())  # type: ignore[attr-defined]
                .limit(first + 1)
            )
        ).all()
        total = await session.scalar(select(func.count()).select_from(Trip).where(*where))
        page = list(rows[:first])
        trips = await views(session, page, positions=positions)
    return Page(
        trips=trips,
        cursors=[encode_cursor(t.created, t.id) for t in page],
        has_next_page=len(rows) > first,
        total_count=int(total or 0),
    )


async def get_trip(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> TripView:
    tid = parse_trip_id(trip_id)
    async with db() as session:
        trip = await session.get(Trip, tid)
        if trip is None or not await can_see_row(session, user, trip):
            raise NotFound("Trip not found.")
        return await _view(session, trip, positions)


# -- mutations --------------------------------------------------------------------------


def _address_errors(pick_up: str, drop_off: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name, value in (("pickUpAddress", pick_up), ("dropOffAddress", drop_off)):
        if not value.strip():
            errors[name] = ["This field may not be blank."]
        elif len(value) > MAX_ADDRESS:
            errors[name] = [f"Ensure this field has no more than {MAX_ADDRESS} characters."]
    return errors


@dataclass(frozen=True)
class Coordinates:
    """A request's optional pick-up and drop-off points (latitude, longitude)."""

    pick_up: tuple[float, float] | None = None
    drop_off: tuple[float, float] | None = None

    def errors(self) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        for name, point in (("pickUp", self.pick_up), ("dropOff", self.drop_off)):
            if point is not None and (problems := location_errors(*point, None)):
                errors[name] = [f"{k}: {m}" for k, ms in problems.items() for m in ms]
        return errors


async def request_trip(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user: User,
    pick_up: str,
    drop_off: str,
    coordinates: Coordinates = Coordinates(),
) -> TripView:
    if user.group is not UserGroup.RIDER:
        raise Forbidden("Only riders can request trips.")
    if errors := _address_errors(pick_up, drop_off) | coordinates.errors():
        raise BadUserInput("Invalid input.", fields=errors)
    (plat, plon), (dlat, dlon) = (
        (coordinates.pick_up or (None, None)),
        (coordinates.drop_off or (None, None)),
    )
    trip = Trip(
        pick_up_address=pick_up.strip(),
        drop_off_address=drop_off.strip(),
        rider_id=user.id,
        pick_up_latitude=plat,
        pick_up_longitude=plon,
        drop_off_latitude=dlat,
        drop_off_longitude=dlon,
    )
    offered: list[int] = []
    try:
        async with db() as session, session.begin():
            session.add(trip)
            await session.flush()
            if coordinates.pick_up is not None:
                # The first wave commits with the trip: it happens exactly once. Without
                # the position store it offers nobody; the next wave tries again.
                try:
                    offered = await dispatch.offer_wave(
                        session, positions=positions, settings=settings, trip=trip, wave=0
                    )
                except STORE_DOWN as exc:
                    log.warning("position store unreachable; first wave empty: %r", exc)
                dispatch.schedule(session, settings=settings, trip=trip)
                await session.flush()
            view = await _view(session, trip, positions)
    except IntegrityError as exc:
        raise Conflict("You already have an active trip.") from exc
    if coordinates.pick_up is not None:
        metrics.wave(offers=len(offered))
    await events.trip_changed(view, kind="requested")
    await events.offered(view, offered)
    return view


async def _load_for_change(session: AsyncSession, user: User, trip_id: str) -> Trip:
    trip = await session.get(Trip, parse_trip_id(trip_id))
    if trip is None or not await can_see_row(session, user, trip):
        raise NotFound("Trip not found.")
    return trip


async def _apply(
    session: AsyncSession,
    trip: Trip,
    *,
    expect: TripStatus,
    values: dict[str, Any],
    positions: PositionStore,
) -> TripView:
    """Conditional UPDATE on the status we saw: exactly one concurrent writer wins."""
    values = {**values, "updated": utcnow()}
    result = await session.execute(
        update(Trip).where(Trip.id == trip.id, Trip.status == expect).values(**values)  # type: ignore[arg-type]
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("The trip changed meanwhile; this step no longer applies.")
    await session.refresh(trip)
    return await _view(session, trip, positions)


async def accept_trip(
    *, db: SessionMaker, events: Publisher, positions: PositionStore, user: User, trip_id: str
) -> TripView:
    try:
        async with db() as session, session.begin():
            trip = await session.get(Trip, parse_trip_id(trip_id))
            # A driver the trip was offered to (every driver, without a pick-up) who lost
            # the race, even one arriving after the winner committed, gets CONFLICT; to
            # the others a dispatched trip does not exist.
            is_driver = user.group is UserGroup.DRIVER
            if trip is None or not (
                await offered_to(session, trip, user)
                if is_driver
                else await can_see_row(session, user, trip)
            ):
                raise NotFound("Trip not found.")
            if not is_driver:
                raise Forbidden("Only drivers can accept trips.")
            if trip.status is not TripStatus.REQUESTED:
                raise Conflict("This trip is no longer requested.")
            view = await _apply(
                session,
                trip,
                expect=TripStatus.REQUESTED,
                values={"status": TripStatus.STARTED, "driver_id": user.id},
                positions=positions,
            )
    except IntegrityError as exc:
        raise Conflict("You already have a trip under way.") from exc
    assert user.id is not None
    await _after_commit(
        "ON_TRIP",
        positions.start_trip(driver_id=user.id, trip_id=view.id, rider_id=view.rider_id),
    )
    await events.trip_changed(view, kind="accepted", left_pool=True)
    return view


async def update_trip_status(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    user: User,
    trip_id: str,
    status: TripStatus,
) -> TripView:
    async with db() as session, session.begin():
        trip = await _load_for_change(session, user, trip_id)
        if trip.driver_id != user.id:
            raise Forbidden("Only the trip's driver can change its status.")
        if NEXT_STATUS.get(trip.status) is not status:
            raise Conflict(f"A {trip.status.value} trip cannot become {status.value}.")
        view = await _apply(
            session, trip, expect=trip.status, values={"status": status}, positions=positions
        )
    await _ended(positions, view)
    await events.trip_changed(view, kind="status")
    return view


async def _ended(positions: PositionStore, view: TripView) -> None:
    """After commit: a driver whose trip ended is AVAILABLE again."""
    if not view.active and view.driver_id is not None:
        await _after_commit(
            "end of trip", positions.end_trip(driver_id=view.driver_id, trip_id=view.id)
        )


async def cancel_trip(
    *, db: SessionMaker, events: Publisher, positions: PositionStore, user: User, trip_id: str
) -> TripView:
    async with db() as session, session.begin():
        trip = await _load_for_change(session, user, trip_id)
        if trip.rider_id != user.id:
            raise Forbidden("Only the trip's rider can cancel it.")
        if trip.status not in (TripStatus.REQUESTED, TripStatus.STARTED):
            raise Conflict(f"A {trip.status.value} trip cannot be canceled.")
        was = trip.status
        view = await _apply(
            session, trip, expect=was, values={"status": TripStatus.CANCELED}, positions=positions
        )
    await _ended(positions, view)
    await events.trip_changed(view, kind="canceled", left_pool=was is TripStatus.REQUESTED)
    return view


def location_errors(
    latitude: float, longitude: float, heading: float | None
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not -90 <= latitude <= 90:
        errors["latitude"] = ["Must be between -90 and 90."]
    if not -180 <= longitude <= 180:
        errors["longitude"] = ["Must be between -180 and 180."]
    if heading is not None and not 0 <= heading < 360:
        errors["heading"] = ["Must be at least 0 and less than 360."]
    return errors


async def report_location(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    user: User,
    trip_id: str,
    latitude: float,
    longitude: float,
    heading: float | None,
) -> LocationView:
    """A read to check the caller drives the trip, no write: the position goes to the
    store (taxi/positions.py) and to the trip's watchers."""
    if errors := location_errors(latitude, longitude, heading):
        raise BadUserInput("Invalid location.", fields=errors)
    async with db() as session:
        trip = await _load_for_change(session, user, trip_id)
        if trip.driver_id != user.id:
            raise Forbidden("Only the trip's driver can report its position.")
        if trip.status not in UNDER_WAY:
            raise Conflict("Positions are reported only while the trip is under way.")
        parties = (trip.rider_id, trip.driver_id)
    fix = Fix(latitude, longitude, heading, time.time())
    assert user.id is not None
    await positions.set_trip_location(driver_id=user.id, trip_id=trip.id, fix=fix)
    metrics.position()
    location = fix.view()
    await events.location_reported(trip.id, location, parties=parties)
    return location


async def rate_trip(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    user: User,
    trip_id: str,
    rating: int,
) -> TripView:
    if not 1 <= rating <= 5:
        raise BadUserInput("Invalid rating.", fields={"rating": ["Must be between 1 and 5."]})
    async with db() as session, session.begin():
        trip = await _load_for_change(session, user, trip_id)
        if trip.rider_id != user.id:
            raise Forbidden("Only the trip's rider can rate it.")
        if trip.status is not TripStatus.COMPLETED or trip.rating is not None:
            raise Conflict("Only a completed, unrated trip can be rated.")
        result = await session.execute(
            update(Trip)
            .where(Trip.id == trip.id, Trip.rating.is_(None))  # type: ignore[arg-type,union-attr]
            .values(rating=rating, updated=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("This trip was rated already.")
        await session.refresh(trip)
        view = await _view(session, trip, positions)
    await events.trip_changed(view, kind="rated")
    return view
