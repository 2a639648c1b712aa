"""A driver's availability (OFFLINE, AVAILABLE, ON_TRIP): PostgreSQL is the truth, the
position store follows it.

A driver is ON_TRIP exactly while a trip they accepted is STARTED or IN_PROGRESS in the
`trip` rows. The position store (taxi/domain/positions.py) keeps a copy, because the
per-report path and dispatch must know it without a SQL read. One operation changes both
stores, so whatever the interleaving of acceptTrip, cancelTrip and goOffline across
processes, the copy is kept right by three rules:

- acceptTrip and goOffline of one driver are serialised on the driver's `user` row
  (FOR NO KEY UPDATE, which does not block the offers' foreign-key checks; SQLite's
  single writer serialises them anyway), and each decides in that one place: the accept
  refuses a dispatched trip to a driver the store has OFFLINE; goOffline refuses while
  the rows hold a trip under way. So one of a racing pair wins, the other is CONFLICT.
- After commit, the store's change is keyed on the (driver, trip) and the store makes its
  order irrelevant (`start_trip` after `end_trip` of the same trip, or after a later
  goOffline, is refused): a trip canceled as it is accepted leaves its driver AVAILABLE.
- goOffline re-derives the copy from the rows whatever it held (a disagreement left by a
  crash between a commit and its store change is repaired there)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Iterable

from sqlalchemy import and_, bindparam, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.db import SessionMaker
from taxi.domain.errors import Conflict
from taxi.domain.models import UNDER_WAY, Trip, User
from taxi.domain.positions import STORE_DOWN, Availability, PositionStore

log = logging.getLogger(__name__)


async def after_commit(what: str, change: Awaitable[object]) -> None:
    """A store change that follows a committed trip change: the commit stands whatever
    happens here (the copy is repaired by the driver's next goOffline or trip)."""
    try:
        await change
    except STORE_DOWN as exc:
        log.warning("position store unreachable; %s not recorded: %r", what, exc)


# Statements every accept and wave runs, built once (building one cost about as much as
# running it).
_LOCK = (
    select(col(User.id)).where(col(User.id) == bindparam("driver")).with_for_update(key_share=True)
)
_UNDER_WAY = exists().where(col(Trip.driver_id) == col(User.id), col(Trip.status).in_(UNDER_WAY))
_FIT = select(col(User.id)).where(
    col(User.id).in_(bindparam("drivers", expanding=True)),
    and_(col(User.is_active).is_(True), not_(_UNDER_WAY)),
)


async def _lock(session: AsyncSession, driver_id: int) -> None:
    # On the session's connection: Core, not the ORM's execution (an ORM-enabled
    # statement through the session cost about three times as much; nothing here is an
    # object). So below.
    await (await session.connection()).execute(_LOCK, {"driver": driver_id})


async def hold(
    session: AsyncSession, *, positions: PositionStore, driver_id: int, dispatched: bool
) -> int | None:
    """In the accept's transaction, before its UPDATE: the driver's row locked against a
    concurrent goOffline, and a `dispatched` trip (offered to drivers who were AVAILABLE)
    refused to one who went OFFLINE since. Returns the store's epoch to start the trip
    with after commit; None when the store is unreachable (the accept goes on)."""
    await _lock(session, driver_id)
    try:
        state, _ = await positions.status(driver_id=driver_id)
    except STORE_DOWN as exc:
        log.warning("position store unreachable; accept without its state: %r", exc)
        return None
    if dispatched and state.availability is Availability.OFFLINE:
        raise Conflict("You went offline; go online to take offered trips.")
    return state.epoch


async def started(
    positions: PositionStore,
    *,
    driver_id: int,
    trip_id: uuid.UUID,
    rider_id: int | None,
    epoch: int | None,
    pick_up: tuple[float, float] | None = None,
) -> None:
    """After the accept's commit: ON_TRIP in the store, unless the trip ended meanwhile;
    heading for `pick_up` (its arrival and ETAs)."""
    if epoch is not None:
        start = positions.start_trip(
            driver_id=driver_id, trip_id=trip_id, rider_id=rider_id, epoch=epoch, pick_up=pick_up
        )
        await after_commit("ON_TRIP", start)


async def ended(positions: PositionStore, *, driver_id: int, trip_id: uuid.UUID) -> None:
    """After the commit that ended (or left) the trip: the driver no longer drives it."""
    await after_commit("end of trip", positions.end_trip(driver_id=driver_id, trip_id=trip_id))


async def go_offline(*, db: SessionMaker, positions: PositionStore, driver_id: int) -> None:
    """OFFLINE unless the rows hold a trip under way (CONFLICT); the store is set from
    the rows either way, under the driver's row lock."""
    async with db() as session, session.begin():
        await _lock(session, driver_id)
        row = (
            await session.execute(
                select(col(Trip.id), col(Trip.rider_id)).where(
                    col(Trip.driver_id) == driver_id, col(Trip.status).in_(UNDER_WAY)
                )
            )
        ).first()
        if row is None:
            await positions.go_offline(driver_id=driver_id)
            return
        state, _ = await positions.status(driver_id=driver_id)
    # The rows say ON_TRIP: make sure the store does too (a no-op unless it lost the
    # accept's change; refused if the trip ended since).
    await started(
        positions, driver_id=driver_id, trip_id=row[0], rider_id=row[1], epoch=state.epoch
    )
    raise Conflict("You are driving a trip; finish it first.")


async def unfit(session: AsyncSession, driver_ids: Iterable[int]) -> set[int]:
    """Of `driver_ids`, those the rows say must get no offer, whatever the store says:
    deactivated (or deleted) users, and drivers with a trip under way."""
    ids = list(driver_ids)
    if not ids:
        return set()
    fit = await (await session.connection()).scalars(_FIT, {"drivers": ids})
    return set(ids) - set(fit)
