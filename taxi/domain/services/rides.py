"""When a ride does not go to plan: releaseTrip (given back and re-dispatched, or a
no-show), and the open trips of a deactivated or deleted user. Same rules as
taxi/domain/services/trips.py: conditional UPDATEs decide races, events are published
after commit."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker, affected
from taxi.domain import availability
from taxi.domain.errors import Conflict, Forbidden
from taxi.domain.events import Kind, Publisher
from taxi.domain.models import (
    ACTIVE_STATUSES,
    CancelReason,
    Trip,
    TripOffer,
    TripStatus,
    User,
    utcnow,
)
from taxi.domain.offers import RELEASED_WAVE
from taxi.domain.positions import STORE_DOWN, PositionStore
from taxi.domain.readmodels import TripView

# The module, not its names: trips -> queries -> sessions -> rides -> trips is a circle.
from taxi.domain.services import dispatch, trips


@dataclass(frozen=True, slots=True)
class Outcome:
    """A committed change to publish: the trip, the event's kind, the newly offered."""

    view: TripView
    kind: Kind
    offered: tuple[int, ...] = ()
    left_pool: bool = False


async def _release(
    session: AsyncSession,
    *,
    positions: PositionStore,
    settings: Settings,
    trip: Trip | trips.TripRow,
) -> Outcome:
    """The trip REQUESTED again, without its driver, who is never offered it again; the
    first wave and a fresh schedule (waves, expiry) in this transaction."""
    driver = trip.driver_id
    assert driver is not None
    values = {"status": TripStatus.REQUESTED, "driver_id": None, "arrived_at": None}
    await trips._apply(session, trip, expect=TripStatus.STARTED, values=values, positions=positions)
    # The releasing driver's offer row (if any) becomes a marker that keeps the trip out of
    # their pool and out of every later wave (taxi/domain/offers.py).
    marked = (
        update(TripOffer)
        .where(col(TripOffer.trip_id) == trip.id, col(TripOffer.driver_id) == driver)
        .values(wave=RELEASED_WAVE)
    )
    if not await affected(session, marked):
        session.add(TripOffer(trip_id=trip.id, driver_id=driver, wave=RELEASED_WAVE))
    offered: list[int] = []
    if trip.pick_up_latitude is not None:
        with suppress(*STORE_DOWN):  # else the next wave (scheduled below) tries again
            offered = await dispatch.offer_wave(
                session, positions=positions, settings=settings, trip=trip, wave=0
            )
    await dispatch.schedule(session, settings=settings, trip=trip, again=True)
    await session.flush()
    view = await trips._view(session, trip.id, positions)
    return Outcome(view, Kind.RELEASED, tuple(offered))


async def _cancel(
    session: AsyncSession,
    *,
    positions: PositionStore,
    trip: Trip | trips.TripRow,
    reason: CancelReason,
    fee: int | None = None,
) -> Outcome:
    now = utcnow()
    values = {"status": TripStatus.CANCELED, "cancel_reason": reason, "ended_at": now}
    if fee is not None:
        values["fare_final"] = fee
    was = trip.status
    view = await trips._apply(session, trip, expect=was, values=values, positions=positions)
    return Outcome(view, Kind.CANCELED, left_pool=was is TripStatus.REQUESTED)


async def _publish(
    events: Publisher, positions: PositionStore, outcomes: list[Outcome], *, driver: int | None
) -> None:
    """After commit: the released driver AVAILABLE, the watchers told, the new offers out."""
    for outcome in outcomes:
        view = outcome.view
        if outcome.kind is Kind.RELEASED and driver is not None:
            await availability.ended(positions, driver_id=driver, trip_id=view.id)
        else:
            await trips._ended(positions, view)
        await events.send(
            events.trip_change(view, kind=outcome.kind, left_pool=outcome.left_pool),
            events.offer(view, list(outcome.offered)),
        )


async def release_trip(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user: User,
    trip_id: str,
    no_show: bool,
) -> TripView:
    async with db() as session, session.begin():
        trip = await trips._load(session, user, trip_id)
        if trip.driver_id != user.id:
            raise Forbidden("Only the trip's driver can give it back.")
        if trip.status is not TripStatus.STARTED:
            raise Conflict(f"A {trip.status.value} trip cannot be given back.")
        if no_show:
            waited = trip.arrived_at and utcnow() - trip.arrived_at
            if not waited or waited < timedelta(seconds=settings.no_show_seconds):
                raise Conflict(
                    f"A no-show needs {settings.no_show_seconds:g} s of waiting at the pick-up."
                )
            outcome = await _cancel(
                session,
                positions=positions,
                trip=trip,
                reason=CancelReason.RIDER_NO_SHOW,
                fee=settings.fare_no_show_fee,
            )
        else:
            outcome = await _release(session, positions=positions, settings=settings, trip=trip)
    await _publish(events, positions, [outcome], driver=user.id)
    return outcome.view


async def close_open_trips(
    session: AsyncSession, *, positions: PositionStore, settings: Settings, user_id: int
) -> list[Outcome]:
    """In the caller's transaction (deactivation, deletion): the user's open trips
    CANCELED with ACCOUNT_DEACTIVATED, except a driver's STARTED trip, given back."""
    rows = await session.scalars(
        select(Trip)
        .where(
            or_(col(Trip.rider_id) == user_id, col(Trip.driver_id) == user_id),
            col(Trip.status).in_(ACTIVE_STATUSES),
        )
        .with_for_update()
    )
    outcomes = []
    for trip in rows.all():
        if trip.driver_id == user_id and trip.status is TripStatus.STARTED:
            outcomes.append(
                await _release(session, positions=positions, settings=settings, trip=trip)
            )
        else:
            outcomes.append(
                await _cancel(
                    session,
                    positions=positions,
                    trip=trip,
                    reason=CancelReason.ACCOUNT_DEACTIVATED,
                )
            )
    return outcomes


async def publish_closed(
    *, events: Publisher, positions: PositionStore, outcomes: list[Outcome], user_id: int
) -> None:
    """After the deactivation's commit: the trips' changes out, and the user out of the
    position store (a deactivated or deleted driver must get no further offers)."""
    await _publish(events, positions, outcomes, driver=user_id)
    await availability.after_commit("leaving dispatch", positions.go_offline(driver_id=user_id))
