"""Live feeds of trip state, as plain descriptions: which channels, what a watcher may
see of each event, and how to read where things stand now. No GraphQL, no sockets:
the live layer (taxi/transport/live) serves them. Each feed reads the database when it starts
(and once after the broadcast backend reconnected); every event in between is only
filtered, with no query per subscriber."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from taxi.core.db import SessionMaker
from taxi.domain import events
from taxi.domain.errors import Forbidden, NotFound
from taxi.domain.events import Event, Kind
from taxi.domain.models import UNDER_WAY, Trip, TripStatus, User, UserGroup
from taxi.domain.offers import can_see, was_offered
from taxi.domain.positions import PositionStore
from taxi.domain.readmodels import LocationView, TripView
from taxi.domain.services import reads
from taxi.domain.services.queries import TripRow, get_trip, visible_trip

T = TypeVar("T")


class End(Exception):
    """Raised by a feed's `see`: the watcher may no longer see it, the feed ends."""


@dataclass(frozen=True, slots=True)
class Feed(Generic[T]):
    """One watcher's view of some channels. `see` turns an event into what the
    watcher gets (None: nothing this time; raises End: no more); `current` reads the
    state to send first and after a reconnect (None: nothing known yet)."""

    channels: tuple[str, ...]
    see: Callable[[Event], T | None]
    current: Callable[[], Awaitable[T | None]] | None = None


async def check_trip_watch(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> uuid.UUID:
    """Raises NotFound before the feed opens, so the client gets an error message."""
    return cast(uuid.UUID, (await visible_trip(db=db, user=user, trip_id=trip_id)).id)


def watch_trip(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: uuid.UUID
) -> Feed[TripView]:
    assert user.id is not None
    uid, group = user.id, user.group

    async def current() -> TripView:
        return await get_trip(db=db, positions=positions, user=user, trip_id=str(trip_id))

    def see(event: Event) -> TripView:
        view = event.trip
        if not can_see(uid, group, view):
            raise End  # e.g. a driver who lost the race: no further updates
        return view

    return Feed((events.trip_channel(trip_id),), see, current)


def watch_trips(*, user: User) -> Feed[TripView]:
    assert user.id is not None
    uid, group = user.id, user.group

    def see(event: Event) -> TripView | None:
        view = event.trip
        if group is UserGroup.DRIVER and view.offered is not None:
            # A dispatched trip reaches its drivers as offers, on their own channel.
            if event.kind is Kind.REQUESTED:
                return None
            if event.kind is Kind.OFFERED:
                return view
        if can_see(uid, group, view):
            return view
        if group is UserGroup.DRIVER and event.left_pool and was_offered(uid, view):
            return event.redacted
        return None

    channels = [events.TRIPS]
    if group is UserGroup.DRIVER:
        channels.append(events.driver_channel(uid))
    return Feed(tuple(channels), see)


def check_driver(user: User) -> None:
    if user.group is not UserGroup.DRIVER:
        raise Forbidden("Only drivers receive trip requests.")


def _requested(event: Event) -> TripView | None:
    # "requested" (or "released": back in the pool) on the common pool, "offered" on the
    # driver's own channel.
    return event.trip if event.kind in (Kind.REQUESTED, Kind.RELEASED, Kind.OFFERED) else None


def watch_requests(*, user: User) -> Feed[TripView]:
    assert user.id is not None
    uid = user.id

    def see(event: Event) -> TripView | None:
        view = _requested(event)
        return None if view is None or uid in view.released else view

    return Feed((events.POOL, events.driver_channel(uid)), see)


def _is_party(user: User, trip: TripView | Trip | TripRow) -> bool:
    rider = trip.rider_id
    driver = trip.driver_id
    return user.id is not None and user.id in (rider, driver)


async def check_location_watch(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> uuid.UUID:
    trip = await visible_trip(db=db, user=user, trip_id=trip_id)
    if not _is_party(user, trip):
        raise Forbidden("Only the trip's rider and driver can follow the car.")
    return cast(uuid.UUID, trip.id)


def watch_location(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: uuid.UUID
) -> Feed[LocationView]:
    async def current() -> LocationView | None:
        # The trip's row and the car's position: what get_trip's view would add (parties,
        # offers) is not sent.
        trip = await visible_trip(db=db, user=user, trip_id=str(trip_id))
        if not _is_party(user, trip):
            raise NotFound("Trip not found.")
        fix = None
        if trip.status in UNDER_WAY:
            fix = (await reads.locations(positions, [trip.id])).get(trip.id)
        if fix is None:
            return None
        # As every frame: the ETA to the next stop (the pick-up while STARTED).
        stop = "pick_up" if trip.status is TripStatus.STARTED else "drop_off"
        latitude, longitude = getattr(trip, f"{stop}_latitude"), getattr(trip, f"{stop}_longitude")
        return positions.estimator.located(
            location=fix.view(),
            stop=None if latitude is None or longitude is None else (latitude, longitude),
        )

    def see(event: Event) -> LocationView:
        # A location event names who may watch (rider, driver), not the whole trip.
        if user.id not in event.parties:
            raise End
        return event.location

    return Feed((events.location_channel(trip_id),), see, current)
