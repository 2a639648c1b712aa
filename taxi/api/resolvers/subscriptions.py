"""Subscriptions. Authorization runs when the client subscribes (an `error` message for
that operation; the socket stays open) and is re-applied to every event by the feed.

A field resolves to a `Live`: the feed the business rules describe (its views are this
schema's objects: taxi/domain/readmodels.py). The live layer (taxi/transport/live)
registers it with the hub and
executes each event once per document; nothing iterates it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import strawberry

from taxi.api.schema.types import Info, subscription
from taxi.domain.readmodels import LocationView, TripView
from taxi.domain.services import live

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Live(AsyncIterable[T], Generic[T]):
    feed: live.Feed[T]

    def __aiter__(self) -> AsyncIterator[T]:
        # graphql-core wants a subscription field to return an async iterable; this one
        # is a description, served by taxi/transport/live as records in the hub, not a stream.
        raise TypeError("Live subscriptions are served by taxi.transport.live, not iterated.")


@strawberry.type
class Subscription:
    @subscription(description="Drivers: each trip as soon as a rider requests it.")
    async def trip_requested(self, info: Info) -> AsyncIterable[TripView]:
        user = await info.context.user()
        live.check_driver(user)
        return Live(live.watch_requests(user=user))

    @subscription(
        description=(
            "The trip's rider and driver (and any driver while it is REQUESTED): its current "
            "state first, then every change."
        )
    )
    async def trip_updated(self, info: Info, id: strawberry.ID) -> AsyncIterable[TripView]:
        ctx = info.context
        user = await ctx.user()
        positions = ctx.services.positions
        trip_id = await live.check_trip_watch(db=ctx.db, positions=positions, user=user, trip_id=id)
        feed = live.watch_trip(db=ctx.db, positions=positions, user=user, trip_id=trip_id)
        return Live(feed)

    @subscription(
        description=(
            "Every change to any trip the caller may see by the rules of Query.trips, "
            "including a requested trip leaving the pool."
        )
    )
    async def trips_updated(self, info: Info) -> AsyncIterable[TripView]:
        user = await info.context.user()
        return Live(live.watch_trips(user=user))

    @subscription(
        description=(
            "The trip's rider and driver: each position the driver reports; the last known "
            "one first, when there is one."
        )
    )
    async def driver_location(
        self, info: Info, trip_id: strawberry.ID
    ) -> AsyncIterable[LocationView]:
        ctx = info.context
        user = await ctx.user()
        positions = ctx.services.positions
        tid = await live.check_location_watch(
            db=ctx.db, positions=positions, user=user, trip_id=trip_id
        )
        feed = live.watch_location(db=ctx.db, positions=positions, user=user, trip_id=tid)
        return Live(feed)
