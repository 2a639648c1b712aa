"""Live streams of trip state. Each stream reads the database once when it starts
(and once after the broadcast backend reconnected); every event in between is
filtered and passed on as it came, with no query per subscriber."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from taxi import events
from taxi.db import SessionMaker
from taxi.errors import Forbidden, NotFound
from taxi.hub import Hub
from taxi.models import Trip, User, UserGroup
from taxi.resolvers.trips import can_see, get_trip, parse_trip_id
from taxi.views import LocationView, TripView


async def check_trip_watch(*, db: SessionMaker, user: User, trip_id: str) -> uuid.UUID:
    """Raises NotFound before the stream opens, so the client gets an error message."""
    await get_trip(db=db, user=user, trip_id=trip_id)
    return parse_trip_id(trip_id)


async def watch_trip(
    *, db: SessionMaker, hub: Hub, user: User, trip_id: uuid.UUID
) -> AsyncIterator[TripView]:
    assert user.id is not None
    async with hub.subscribe(events.trip_channel(trip_id)) as inbox:
        # Subscribed first, then read: a change committed in between is not lost.
        try:
            yield await get_trip(db=db, user=user, trip_id=str(trip_id))
        except NotFound:
            return
        async for item in inbox:
            if item["kind"] == events.RESYNC:
                try:
                    yield await get_trip(db=db, user=user, trip_id=str(trip_id))
                except NotFound:
                    return
                continue
            view = events.trip_of(item)
            if not can_see(user.id, user.group, view):
                return  # e.g. a driver who lost the race: no further updates
            yield view


async def watch_trips(*, hub: Hub, user: User) -> AsyncIterator[TripView]:
    assert user.id is not None
    async with hub.subscribe(events.TRIPS) as inbox:
        async for item in inbox:
            if item["kind"] == events.RESYNC:
                continue
            view = events.trip_of(item)
            if can_see(user.id, user.group, view):
                yield view
            elif user.group is UserGroup.DRIVER and item.get("left_pool"):
                yield events.redacted_trip_of(item)


def check_driver(user: User) -> None:
    if user.group is not UserGroup.DRIVER:
        raise Forbidden("Only drivers receive trip requests.")


async def watch_requests(*, hub: Hub, user: User) -> AsyncIterator[TripView]:
    async with hub.subscribe(events.POOL) as inbox:
        async for item in inbox:
            if item["kind"] == "requested":
                yield events.trip_of(item)


def _is_party(user: User, trip: TripView | Trip) -> bool:
    rider = trip.rider_id
    driver = trip.driver_id
    return user.id is not None and user.id in (rider, driver)


async def check_location_watch(*, db: SessionMaker, user: User, trip_id: str) -> uuid.UUID:
    view = await get_trip(db=db, user=user, trip_id=trip_id)
    if not _is_party(user, view):
        raise Forbidden("Only the trip's rider and driver can follow the car.")
    return view.id


async def watch_location(
    *, db: SessionMaker, hub: Hub, user: User, trip_id: uuid.UUID
) -> AsyncIterator[LocationView]:
    async def current() -> LocationView | None:
        view = await get_trip(db=db, user=user, trip_id=str(trip_id))
        if not _is_party(user, view):
            raise NotFound("Trip not found.")
        return view.driver_location

    async with hub.subscribe(events.location_channel(trip_id)) as inbox:
        try:
            if (last := await current()) is not None:
                yield last
        except NotFound:
            return
        async for item in inbox:
            if item["kind"] == events.RESYNC:
                try:
                    if (last := await current()) is not None:
                        yield last
                except NotFound:
                    return
                continue
            view = events.trip_of(item)
            if not _is_party(user, view):
                return
            yield events.location_of(item)
