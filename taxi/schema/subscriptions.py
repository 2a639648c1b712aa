"""Subscriptions. Authorization runs before the stream opens (an `error` message for
that operation, the socket stays open) and is re-applied to every event."""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

import strawberry

from taxi.resolvers import live
from taxi.schema.types import Info, Location, Trip
from taxi.views import LocationView, TripView

T = TypeVar("T")

# One GraphQL object per view: every subscriber of an event then yields the SAME payload
# object, which is what lets the fan-out share one execution (taxi/schema/fanout.py).
# Keyed by the view's identity (views compare by value and are unhashable); an entry is
# dropped when its view dies.
_objects: dict[int, Any] = {}


def _shared(view: Any, convert: Callable[[Any], T]) -> T:
    key = id(view)
    obj = _objects.get(key)
    if obj is None:
        obj = _objects[key] = convert(view)
        weakref.finalize(view, _objects.pop, key, None)
    return obj  # type: ignore[no-any-return]


async def _trips(source: AsyncIterator[TripView]) -> AsyncGenerator[Trip, None]:
    async for view in source:
        yield _shared(view, Trip.of)


async def _locations(source: AsyncIterator[LocationView]) -> AsyncGenerator[Location, None]:
    async for view in source:
        yield _shared(view, Location.of)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Drivers: each trip as soon as a rider requests it.")
    async def trip_requested(self, info: Info) -> AsyncGenerator[Trip, None]:
        user = await info.context.user()
        live.check_driver(user)
        return _trips(live.watch_requests(hub=info.context.services.hub, user=user))

    @strawberry.subscription(
        description=(
            "The trip's rider and driver (and any driver while it is REQUESTED): its current "
            "state first, then every change."
        )
    )
    async def trip_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Trip, None]:
        ctx = info.context
        user = await ctx.user()
        trip_id = await live.check_trip_watch(db=ctx.db, user=user, trip_id=id)
        return _trips(live.watch_trip(db=ctx.db, hub=ctx.services.hub, user=user, trip_id=trip_id))

    @strawberry.subscription(
        description=(
            "Every change to any trip the caller may see by the rules of Query.trips, "
            "including a requested trip leaving the pool."
        )
    )
    async def trips_updated(self, info: Info) -> AsyncGenerator[Trip, None]:
        user = await info.context.user()
        return _trips(live.watch_trips(hub=info.context.services.hub, user=user))

    @strawberry.subscription(
        description=(
            "The trip's rider and driver: each position the driver reports; the last known "
            "one first, when there is one."
        )
    )
    async def driver_location(
        self, info: Info, trip_id: strawberry.ID
    ) -> AsyncGenerator[Location, None]:
        ctx = info.context
        user = await ctx.user()
        tid = await live.check_location_watch(db=ctx.db, user=user, trip_id=trip_id)
        return _locations(
            live.watch_location(db=ctx.db, hub=ctx.services.hub, user=user, trip_id=tid)
        )
