"""Live streams of trip state. Each stream reads the database once when it starts
(and once after the broadcast backend reconnected); every event in between is
filtered and passed on as it came, with no query per subscriber."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from taxi import events
from taxi.db import SessionMaker
from taxi.errors import Forbidden, NotFound
from taxi.hub import Direct, Hub, Item
from taxi.models import Trip, User, UserGroup
from taxi.offers import can_see, was_offered
from taxi.positions import PositionStore
from taxi.resolvers.trips import get_trip, parse_trip_id
from taxi.views import LocationView, TripView

T = TypeVar("T")


async def check_trip_watch(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> uuid.UUID:
    """Raises NotFound before the stream opens, so the client gets an error message."""
    await get_trip(db=db, positions=positions, user=user, trip_id=trip_id)
    return parse_trip_id(trip_id)


class _End(Exception):
    """The watcher may no longer see the stream: it ends (complete)."""


# Hands a view to the client at once, or returns None when it cannot (the caller then
# yields it). Given by the schema layer: it knows the operation's socket and document.
Send = Callable[[Any], "Coroutine[Any, Any, Any] | None"]


def _direct(see: Callable[[Item], Any], send: Send) -> Direct:
    """Inline delivery from the hub's pump (see taxi/hub.py): filter, then send."""

    def direct(item: Item) -> Coroutine[Any, Any, Any] | bool:
        if item["kind"] == events.RESYNC:
            return False  # reads the database: the subscriber's own task does it
        try:
            view = see(item)
        except _End:
            return False  # the subscriber's task ends the stream
        if view is None:
            return True
        return send(view) or False

    return direct


async def _follow(
    hub: Hub,
    channels: list[str],
    see: Callable[[Item], T | None],
    *,
    send: Send | None,
    current: Callable[[], Awaitable[T | None]] | None = None,
) -> AsyncIterator[T]:
    """What `current` reads first (if given), then every event on `channel` the watcher
    may see, as `see` makes it; after a reconnect of the broadcast backend (RESYNC),
    `current` again. One generator per live subscription: they are many."""
    async with hub.subscribe(*channels) as inbox:
        # Subscribed first, then read: a change committed in between is not lost.
        refresh = current is not None
        inline = send is not None  # handed to the hub once the first state is out
        while True:
            if refresh:
                assert current is not None
                try:
                    fresh = await current()
                except NotFound:
                    return
                if fresh is not None:
                    yield fresh
                del fresh
                refresh = False
            if inline:
                assert send is not None
                inbox.direct = _direct(see, send)
                inline = False
            item = await inbox.get()
            if item["kind"] == events.RESYNC:
                refresh = current is not None
                continue
            try:
                view = see(item)
            except _End:
                return
            if view is not None:
                yield view
            del view


def watch_trip(
    *,
    db: SessionMaker,
    positions: PositionStore,
    hub: Hub,
    user: User,
    trip_id: uuid.UUID,
    send: Send | None = None,
) -> AsyncIterator[TripView]:
    assert user.id is not None
    uid, group = user.id, user.group

    async def current() -> TripView:
        return await get_trip(db=db, positions=positions, user=user, trip_id=str(trip_id))

    def see(item: Item) -> TripView:
        view = events.trip_of(item)
        if not can_see(uid, group, view):
            raise _End  # e.g. a driver who lost the race: no further updates
        return view

    return _follow(hub, [events.trip_channel(trip_id)], see, send=send, current=current)


def watch_trips(*, hub: Hub, user: User, send: Send | None = None) -> AsyncIterator[TripView]:
    assert user.id is not None
    uid, group = user.id, user.group

    def see(item: Item) -> TripView | None:
        view = events.trip_of(item)
        if group is UserGroup.DRIVER and view.offered is not None:
            # A dispatched trip reaches its drivers as offers, on their own channel.
            if item["kind"] == "requested":
                return None
            if item["kind"] == "offered":
                return view
        if can_see(uid, group, view):
            return view
        if group is UserGroup.DRIVER and item.get("left_pool") and was_offered(uid, view):
            return events.redacted_trip_of(item)
        return None

    channels = [events.TRIPS]
    if group is UserGroup.DRIVER:
        channels.append(events.driver_channel(uid))
    return _follow(hub, channels, see, send=send)


def check_driver(user: User) -> None:
    if user.group is not UserGroup.DRIVER:
        raise Forbidden("Only drivers receive trip requests.")


def _requested(item: Item) -> TripView | None:
    # "requested" on the common pool, "offered" on the driver's own channel.
    return events.trip_of(item) if item["kind"] in ("requested", "offered") else None


def watch_requests(*, hub: Hub, user: User, send: Send | None = None) -> AsyncIterator[TripView]:
    assert user.id is not None
    channels = [events.POOL, events.driver_channel(user.id)]
    return _follow(hub, channels, _requested, send=send)


def _is_party(user: User, trip: TripView | Trip) -> bool:
    rider = trip.rider_id
    driver = trip.driver_id
    return user.id is not None and user.id in (rider, driver)


async def check_location_watch(
    *, db: SessionMaker, positions: PositionStore, user: User, trip_id: str
) -> uuid.UUID:
    view = await get_trip(db=db, positions=positions, user=user, trip_id=trip_id)
    if not _is_party(user, view):
        raise Forbidden("Only the trip's rider and driver can follow the car.")
    return view.id


def watch_location(
    *,
    db: SessionMaker,
    positions: PositionStore,
    hub: Hub,
    user: User,
    trip_id: uuid.UUID,
    send: Send | None = None,
) -> AsyncIterator[LocationView]:
    async def current() -> LocationView | None:
        view = await get_trip(db=db, positions=positions, user=user, trip_id=str(trip_id))
        if not _is_party(user, view):
            raise NotFound("Trip not found.")
        return view.driver_location

    def see(item: Item) -> LocationView:
        # A location event names who may watch (rider, driver), not the whole trip.
        if user.id not in item["parties"]:
            raise _End
        return events.location_of(item)

    return _follow(hub, [events.location_channel(trip_id)], see, send=send, current=current)
