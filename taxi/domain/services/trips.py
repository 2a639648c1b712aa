"""The ride lifecycle. Races are decided by the database: conditional UPDATEs and
partial unique indexes, never a read-then-write in Python."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel import col

from taxi.core import metrics
from taxi.core.config import Settings
from taxi.core.db import SessionMaker, affected
from taxi.core.ratelimit import Limiter
from taxi.domain import availability
from taxi.domain.errors import BadUserInput, Conflict, Forbidden, NotFound, RateLimited
from taxi.domain.events import Kind, Publisher
from taxi.domain.fares import MAX_METERS, Tariff
from taxi.domain.models import (
    ACTIVE_STATUSES,
    UNDER_WAY,
    CancelReason,
    Trip,
    TripStatus,
    User,
    UserGroup,
    utcnow,
)
from taxi.domain.positions import STORE_DOWN, Fix, PositionStore
from taxi.domain.quotes import Quote
from taxi.domain.readmodels import LocationView, PointView, TripView

# The module, not its names: queries -> sessions -> rides -> trips -> queries is a circle
# (importing queries first failed on a partially initialized module).
from taxi.domain.services import dispatch, queries, reads
from taxi.domain.services.points import NO_COORDINATES
from taxi.domain.services.points import Coordinates as Coordinates
from taxi.domain.services.points import location_errors as location_errors
from taxi.domain.services.pricing import Market, market

log = logging.getLogger(__name__)

MAX_ADDRESS = 255
NEXT_STATUS = {
    TripStatus.STARTED: TripStatus.IN_PROGRESS,
    TripStatus.IN_PROGRESS: TripStatus.COMPLETED,
}


# One trip by id: the statement is built once (building it cost more than running it:
# every lifecycle step answers with this view).
_ONE_TRIP = [col(Trip.id) == bindparam("one_trip")]


async def _view(
    session: AsyncSession,
    trip_id: uuid.UUID,
    positions: PositionStore,
    *,
    offers: reads.Offers | None = None,
) -> TripView:
    """A trip the caller may see (checked already), as it stands in this transaction.
    `offers`: as reads.load takes them (None: read)."""
    loaded = await reads.load(
        session,
        _ONE_TRIP,
        positions=positions,
        key="one trip",
        params={"one_trip": trip_id},
        offers=offers,
    )
    return loaded.trips[0]


_COLUMNS = tuple(column.name for column in reads.TRIPS.c)
_NEW = "new_"  # the bind parameters of `_INSERT`'s values (not the columns' own names)
_INSERT = (
    insert(Trip)
    .values({n: bindparam(_NEW + n, type_=reads.TRIPS.c[n].type) for n in _COLUMNS})
    .returning(*reads.TRIPS.c)
)


def _inserting(trip: NewTrip) -> dict[str, Any]:
    return {_NEW + name: value for name, value in trip.row.items()}


# Trip's defaults by column: values, and factories (an id, the times) called per trip.
_FIELDS = {name: Trip.model_fields[name] for name in _COLUMNS}
_DEFAULTS = {
    n: f.default for n, f in _FIELDS.items() if not f.is_required() and f.default_factory is None
}
_FACTORIES = tuple(
    (n, cast(Callable[[], Any], f.default_factory))
    for n, f in _FIELDS.items()
    if f.default_factory is not None
)


@dataclass(frozen=True, slots=True)
class NewTrip:
    """A requested trip's row (`_INSERT`'s parameters), as Trip's own defaults would make
    it, and what dispatch reads of it. Not a Trip: building one cost ~380 µs here (each of
    its columns set through SQLModel's, pydantic's and SQLAlchemy's attribute hooks, its
    default factories inspected), and the trip is never used as an object here."""

    row: dict[str, Any]

    @classmethod
    def of(cls, **values: Any) -> NewTrip:
        row = dict(_DEFAULTS)
        row.update((name, make()) for name, make in _FACTORIES)
        row.update(values)
        assert len(row) == len(_COLUMNS), set(row) ^ set(_COLUMNS)  # required ones given
        return cls(row)

    @property
    def id(self) -> uuid.UUID:
        return cast(uuid.UUID, self.row["id"])

    @property
    def pick_up_latitude(self) -> float | None:
        return cast(float | None, self.row["pick_up_latitude"])

    @property
    def pick_up_longitude(self) -> float | None:
        return cast(float | None, self.row["pick_up_longitude"])


def _address_errors(pick_up: str, drop_off: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name, value in (("pickUpAddress", pick_up), ("dropOffAddress", drop_off)):
        if not value.strip():
            errors[name] = ["This field may not be blank."]
        elif len(value) > MAX_ADDRESS:
            errors[name] = [f"Ensure this field has no more than {MAX_ADDRESS} characters."]
    return errors


async def request_trip(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    limiter: Limiter,
    user: User,
    pick_up: str,
    drop_off: str,
    coordinates: Coordinates = NO_COORDINATES,
    quote_id: str | None = None,
) -> TripView:
    """`limiter`: requests per rider (TRIP_REQUESTS_PER_10_MIN); each one reaches
    drivers, so a rider requesting and canceling cannot flood them with offers.
    `quote_id`: a FareQuote's, whose price the trip holds."""
    if user.group is not UserGroup.RIDER or user.id is None:
        raise Forbidden("Only riders can request trips.")
    if errors := _address_errors(pick_up, drop_off) | coordinates.errors():
        raise BadUserInput("Invalid input.", fields=errors)
    quote = None
    if quote_id is not None:
        assert settings.jwt_secret is not None
        quote = Quote.verify(quote_id, secret=settings.jwt_secret)
        quote.check(
            rider=user.id,
            pick_up=coordinates.pick_up,
            drop_off=coordinates.drop_off,
            within=settings.arrival_meters,
        )
    limit_key = str(user.id)
    if not await limiter.allow(limit_key):
        raise RateLimited("Too many trip requests; try again in a few minutes.")
    (plat, plon), (dlat, dlon) = (
        (coordinates.pick_up or (None, None)),
        (coordinates.drop_off or (None, None)),
    )
    held: dict[str, Any] = {}
    if quote is not None:
        # The quote's price is held, at the quote's surge.
        held = {
            "fare_quoted": quote.price,
            "quoted_meters": quote.meters,
            "fare_surge": quote.surge,
        }
    trip = NewTrip.of(
        pick_up_address=pick_up.strip(),
        drop_off_address=drop_off.strip(),
        rider_id=user.id,
        pick_up_latitude=plat,
        pick_up_longitude=plon,
        drop_off_latitude=dlat,
        drop_off_longitude=dlon,
        fare_currency=settings.fare_currency,
        **held,
    )
    offered: list[int] = []
    # Each statement here costs a loop pass at rush hour (and a few hundred microseconds
    # of CPU): nothing is read that this request knows (a new trip's offers).
    try:
        async with db() as session, session.begin():
            searched = None
            if quote is None and coordinates.pick_up is not None:
                now = await _market(session, positions, settings, coordinates.pick_up)
                if now is not None:
                    trip.row["fare_surge"] = now.surge
                    # The market searched the first wave's circle already.
                    searched = dispatch.Searched(settings.dispatch_radius_meters, now.nearest)
            # Core: the trip is never read back as an object here; its view's row comes
            # with the INSERT (reads.written), rendered once the first wave is known.
            inserted = await reads.written(session, _INSERT, _inserting(trip))
            if coordinates.pick_up is not None:
                # The first wave commits with the trip: it happens exactly once. Without
                # the position store it offers nobody; the next wave tries again.
                try:
                    offered = await dispatch.offer_wave(
                        session,
                        positions=positions,
                        settings=settings,
                        trip=trip,
                        wave=0,
                        offered=frozenset(),  # a new trip: nobody yet
                        searched=searched,
                    )
                except STORE_DOWN as exc:
                    log.warning("position store unreachable; first wave empty: %r", exc)
            await dispatch.schedule(session, settings=settings, trip=trip)
            known = reads.Offers({trip.id: tuple(sorted(offered))}, {})
            (view,) = await reads.views(session, inserted, positions=positions, offers=known)
    except IntegrityError as exc:
        await limiter.refund(limit_key)  # nothing was created, nobody offered anything
        raise Conflict("You already have an active trip.") from exc
    if coordinates.pick_up is not None:
        metrics.wave(offers=len(offered))
    # Together: the rider's and watchers' channels and the first wave's drivers.
    await events.send(events.trip_change(view, kind=Kind.REQUESTED), events.offer(view, offered))
    return view


async def _market(
    session: AsyncSession, positions: PositionStore, settings: Settings, point: tuple[float, float]
) -> Market | None:
    """A request without a quote pays the surge of the moment it was made (1.0, and None
    here, while the position store is unreachable: the request itself still goes
    through)."""
    try:
        return await market(
            session,
            positions=positions,
            settings=settings,
            point=point,
            drivers=settings.dispatch_batch_size,
        )
    except STORE_DOWN as exc:
        log.warning("position store unreachable; no surge: %r", exc)
        return None


TripRow = queries.TripRow


async def _load(
    session: AsyncSession, user: User, trip_id: str, *, offered: bool = False
) -> TripRow:
    return await queries.trip_row(session, user, trip_id, offered=offered)


async def _load_for_change(session: AsyncSession, user: User, trip_id: str) -> TripRow:
    """`_load` for a change that keeps the trip's rider and driver (a status step, a
    cancel): the row of the trip's view (reads.one: its columns by name, its parties'),
    which `_apply(..., parties_kept=True)` renders after the change without reading the
    trip again (a statement less per step; at rush hour two per ride)."""
    driver = user.group is UserGroup.DRIVER
    params = {"one_trip": queries.parse_trip_id(trip_id), "viewer": user.id}
    found = await reads.one(
        session, queries.one_visible(driver), key=("get_trip", driver), params=params
    )
    if found is None:
        raise NotFound("Trip not found.")
    return found


_SET = "set_"  # the bind parameters of `_changing`'s columns (not their own names: reserved)


@functools.cache
def _changing(columns: frozenset[str]) -> ReturningUpdate[Any]:
    """`_apply`'s UPDATE of these columns (each bound as `set_<name>`), returning the
    trip's columns as it left them; built once per set: a handful of sets exist, and
    building the statement cost more than running it."""
    types = reads.TRIPS.c
    return (
        update(Trip)
        .where(col(Trip.id) == bindparam("trip"), col(Trip.status) == bindparam("expect"))
        .values({name: bindparam(_SET + name, type_=types[name].type) for name in columns})
        .returning(*types)
    )


async def _apply(
    session: AsyncSession,
    trip: Trip | TripRow,
    *,
    expect: TripStatus,
    values: dict[str, Any],
    positions: PositionStore,
    offers: reads.Offers | None = None,
    parties_kept: bool = False,
) -> TripView:
    """Conditional UPDATE on the status we saw: exactly one concurrent writer wins.
    (`trip` is not refreshed: the view is what the change made.) `offers`: the view's.
    `parties_kept`: `trip` is `_load_for_change`'s row and the change leaves its rider
    and driver as they are: the view is that row with the trip's columns as the UPDATE
    returns them, not read again."""
    values = {**values, "updated": utcnow()}
    params = {"trip": trip.id, "expect": expect} | {_SET + k: v for k, v in values.items()}
    connection = await session.connection()
    changing = _changing(frozenset(values))
    if not parties_kept:
        rows = await reads.written(connection, changing, params)
        if not rows:
            raise Conflict(CHANGED_MEANWHILE)
        (view,) = await reads.views(connection, rows, positions=positions, offers=offers)
        return view
    returned = (await connection.execute(changing, params)).mappings().one_or_none()
    if returned is None:
        raise Conflict(CHANGED_MEANWHILE)
    assert isinstance(trip, Row)
    row = {**trip._mapping, **returned}
    (view,) = await reads.views(connection, [row], positions=positions, offers=offers)
    return view


CHANGED_MEANWHILE = "The trip changed meanwhile; this step no longer applies."


async def accept_trip(
    *, db: SessionMaker, events: Publisher, positions: PositionStore, user: User, trip_id: str
) -> TripView:
    try:
        async with db() as session, session.begin():
            # A driver the trip was offered to (every driver, without a pick-up) who lost
            # the race, even one arriving after the winner committed, gets CONFLICT; to
            # the others a dispatched trip does not exist.
            is_driver = user.group is UserGroup.DRIVER
            trip = await _load(session, user, trip_id, offered=is_driver)
            if not is_driver:
                raise Forbidden("Only drivers can accept trips.")
            if trip.status is not TripStatus.REQUESTED:
                raise Conflict("This trip is no longer requested.")
            assert user.id is not None
            epoch = await availability.hold(
                session,
                positions=positions,
                driver_id=user.id,
                dispatched=trip.pick_up_latitude is not None,
            )
            view = await _apply(
                session,
                trip,
                expect=TripStatus.REQUESTED,
                values={"status": TripStatus.STARTED, "driver_id": user.id},
                positions=positions,
            )
    except IntegrityError as exc:
        raise Conflict("You already have a trip under way.") from exc
    await availability.started(
        positions,
        driver_id=user.id,
        trip_id=view.id,
        rider_id=view.rider_id,
        epoch=epoch,
        pick_up=_point(view.pick_up),
    )
    await events.trip_changed(view, kind=Kind.ACCEPTED, left_pool=True)
    return view


async def update_trip_status(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user: User,
    trip_id: str,
    status: TripStatus,
) -> TripView:
    driven = None
    if status is TripStatus.COMPLETED:
        # Summed beside the positions while IN_PROGRESS; written once, here.
        driven = await _driven(positions, queries.parse_trip_id(trip_id))
    async with db() as session, session.begin():
        trip = await _load_for_change(session, user, trip_id)
        if trip.driver_id != user.id:
            raise Forbidden("Only the trip's driver can change its status.")
        if NEXT_STATUS.get(trip.status) is not status:
            raise Conflict(f"A {trip.status.value} trip cannot become {status.value}.")
        now = utcnow()
        values: dict[str, Any] = {"status": status}
        if status is TripStatus.IN_PROGRESS:
            values["picked_up_at"] = now
        else:
            meters = min(
                round(driven if driven is not None else trip.quoted_meters or 0), MAX_METERS
            )
            seconds = round((now - (trip.picked_up_at or now)).total_seconds())
            final = Tariff.of(settings).final(
                quoted=trip.fare_quoted,
                quoted_meters=trip.quoted_meters,
                surge=trip.fare_surge,
                driven_meters=meters,
                seconds=seconds,
            )
            values |= {"ended_at": now, "driven_meters": meters, "fare_final": final}
        # Under way or ended: the view goes to the trip's parties only (no offers read).
        view = await _apply(
            session,
            trip,
            expect=trip.status,
            values=values,
            positions=positions,
            offers=reads.NO_OFFERS,
            parties_kept=True,
        )
    if status is TripStatus.IN_PROGRESS:
        drive = positions.drive(trip_id=view.id, drop_off=_point(view.drop_off))
        await availability.after_commit("drop-off stage", drive)
    await _ended(positions, view)
    await events.trip_changed(view, kind=Kind.STATUS)
    return view


async def _driven(positions: PositionStore, trip_id: uuid.UUID) -> float | None:
    """Metres driven, None while the store is unreachable (the quote's distance stands in:
    a completion is never refused for want of Redis)."""
    try:
        return await positions.driven(trip_id=trip_id)
    except STORE_DOWN as exc:
        log.warning("position store unreachable; driven distance unknown: %r", exc)
        return None


def _point(point: PointView | None) -> tuple[float, float] | None:
    return None if point is None else (point.latitude, point.longitude)


async def _ended(positions: PositionStore, view: TripView) -> None:
    """After commit: a driver whose trip ended is AVAILABLE again."""
    if view.status not in ACTIVE_STATUSES and view.driver_id is not None:
        await availability.ended(positions, driver_id=view.driver_id, trip_id=view.id)


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
        now = utcnow()
        canceled = {
            "status": TripStatus.CANCELED,
            "cancel_reason": CancelReason.RIDER_CANCELED,
            "ended_at": now,
        }
        view = await _apply(
            session, trip, expect=was, values=canceled, positions=positions, parties_kept=True
        )
    await _ended(positions, view)
    await events.trip_changed(view, kind=Kind.CANCELED, left_pool=was is TripStatus.REQUESTED)
    return view


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
    store (taxi/domain/positions.py) and to the trip's watchers."""
    if errors := location_errors(latitude, longitude, heading):
        raise BadUserInput("Invalid location.", fields=errors)
    async with db() as session:
        trip = await _load(session, user, trip_id)
        if trip.driver_id != user.id:
            raise Forbidden("Only the trip's driver can report its position.")
        if trip.status not in UNDER_WAY:
            raise Conflict("Positions are reported only while the trip is under way.")
        parties = (trip.rider_id, trip.driver_id)
    fix = Fix(latitude, longitude, heading, time.time())
    assert user.id is not None
    state = await positions.set_trip_location(driver_id=user.id, trip_id=trip.id, fix=fix)
    metrics.positions(stored=1, coalesced=0)
    # The ETA rides on the frame (the store knows the next stop: no read for it).
    stop = state.target if state.trip_id == trip.id else None
    location = positions.estimator.located(location=fix.view(), stop=stop)
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
        trip = await _load(session, user, trip_id)
        if trip.rider_id != user.id:
            raise Forbidden("Only the trip's rider can rate it.")
        if trip.status is not TripStatus.COMPLETED or trip.rating is not None:
            raise Conflict("Only a completed, unrated trip can be rated.")
        rated = (
            update(Trip)
            .where(col(Trip.id) == trip.id, col(Trip.rating).is_(None))
            .values(rating=rating, updated=utcnow())
        )
        if await affected(session, rated) != 1:
            raise Conflict("This trip was rated already.")
        view = await _view(session, trip.id, positions, offers=reads.NO_OFFERS)  # ended
    await events.trip_changed(view, kind=Kind.RATED)
    return view
