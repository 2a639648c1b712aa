"""Subscriptions. Authorization runs before the stream opens (an `error` message for
that operation, the socket stays open) and is re-applied to every event."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

import strawberry

from taxi.resolvers import live
from taxi.schema import fanout
from taxi.schema.types import Info, Location, Trip

T = TypeVar("T")


def _live(
    convert: Callable[[Any], T], watch: Callable[[live.Send | None], AsyncIterator[Any]]
) -> AsyncGenerator[T, None]:
    """A live stream of `watch`, delivering inline (taxi/hub.py) where it can."""
    return _stream(watch(fanout.sender(convert)), convert)


async def _stream(
    source: AsyncIterator[Any], convert: Callable[[Any], T]
) -> AsyncGenerator[T, None]:
    """What the live stream does not hand to the client itself (its first state, a
    resync, anything queued behind a slow socket): one shared object per view, written
    as a shared frame when it can be (taxi/schema/fanout.py), else yielded."""
    async for view in source:
        obj = fanout.shared_object(view, convert)
        if not await fanout.deliver(obj):
            yield obj
        # Not held while the stream waits: the view keeps its shared result and frame.
        del view, obj


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Drivers: each trip as soon as a rider requests it.")
    async def trip_requested(self, info: Info) -> AsyncGenerator[Trip, None]:
        user = await info.context.user()
        live.check_driver(user)
        hub = info.context.services.hub
        return _live(Trip.of, lambda send: live.watch_requests(hub=hub, user=user, send=send))

    @strawberry.subscription(
        description=(
            "The trip's rider and driver (and any driver while it is REQUESTED): its current "
            "state first, then every change."
        )
    )
    async def trip_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Trip, None]:
        ctx = info.context
        user = await ctx.user()
        positions = ctx.services.positions
        trip_id = await live.check_trip_watch(db=ctx.db, positions=positions, user=user, trip_id=id)
        return _live(
            Trip.of,
            lambda send: live.watch_trip(
                db=ctx.db,
                positions=positions,
                hub=ctx.services.hub,
                user=user,
                trip_id=trip_id,
                send=send,
            ),
        )

    @strawberry.subscription(
        description=(
            "Every change to any trip the caller may see by the rules of Query.trips, "
            "including a requested trip leaving the pool."
        )
    )
    async def trips_updated(self, info: Info) -> AsyncGenerator[Trip, None]:
        user = await info.context.user()
        hub = info.context.services.hub
        return _live(Trip.of, lambda send: live.watch_trips(hub=hub, user=user, send=send))

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
        positions = ctx.services.positions
        tid = await live.check_location_watch(
            db=ctx.db, positions=positions, user=user, trip_id=trip_id
        )
        return _live(
            Location.of,
            lambda send: live.watch_location(
                db=ctx.db,
                positions=positions,
                hub=ctx.services.hub,
                user=user,
                trip_id=tid,
                send=send,
            ),
        )
