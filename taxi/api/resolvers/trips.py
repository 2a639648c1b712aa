"""Trips: queries and lifecycle mutations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from taxi.api.context import Context
from taxi.api.schema.types import Info, PageInfo, TripConnection, TripEdge, field, mutation
from taxi.core.db import read_only
from taxi.domain import auth
from taxi.domain.admission import admit
from taxi.domain.models import TripStatus
from taxi.domain.readmodels import LocationView, TripView
from taxi.domain.services import queries, trips
from taxi.domain.services.sessions import Claimed

T = TypeVar("T")


@strawberry.input
class PointInput:
    latitude: float
    longitude: float

    def pair(self) -> tuple[float, float]:
        return (self.latitude, self.longitude)


@strawberry.input
class RequestTripInput:
    pick_up_address: str
    drop_off_address: str
    pick_up: PointInput | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "With coordinates the trip is offered to the nearest available drivers, in "
            "widening waves; without, to every driver."
        ),
    )
    drop_off: PointInput | None = strawberry.UNSET
    quote_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "A FareQuote id, unexpired, for the same pick-up and drop-off (within "
            "ARRIVAL_METERS): the trip's up-front price."
        ),
    )


@strawberry.input
class LocationInput:
    latitude: float
    longitude: float
    heading: float | None = strawberry.UNSET


@strawberry.type
class TripQuery:
    @field(
        description=(
            "Trips the caller may see, newest first. A rider sees the trips they rode or\n"
            "requested; a driver sees every REQUESTED trip plus the trips they drive."
        )
    )
    async def trips(
        self,
        info: Info,
        status: list[TripStatus] | None = strawberry.UNSET,
        first: int | None = 20,
        after: str | None = strawberry.UNSET,
    ) -> TripConnection:
        return await trips_page(info.context, status=status, first=first, after=after)

    @field(description="One trip the caller may see; a NOT_FOUND error (and null) otherwise.")
    async def trip(self, info: Info, id: strawberry.ID) -> TripView | None:
        return await one_trip(info.context, id)


# The query resolvers' work, shared with taxi/api/strategies/reads.py (which answers the same
# fields without graphql-core's per-field execution).


async def trips_page(
    ctx: Context, *, status: list[TripStatus] | None, first: int | None, after: str | None
) -> TripConnection:
    # One session (one connection, one snapshot) for the token check and the page.
    async with ctx.db() as session:
        page = await queries.list_trips(
            session,
            positions=ctx.services.positions,
            user=await ctx.user(session),
            statuses=status or None,
            first=20 if first is None else first,
            after=after or None,
        )
    return _connection(page)


async def checked_trips_page(
    ctx: Context, *, status: list[TripStatus] | None, first: int | None, after: str | None
) -> TripConnection | None:
    """`trips_page` with the token's session checked by the page's own statement (one
    query, not two), for taxi/api/strategies/reads.py; None where that proves nothing (no
    rows, a token without a group): `trips_page` answers then. A bad token raises."""
    if ctx.token is None:
        return None
    claimed = Claimed.of(auth.decode_token(ctx.token, settings=ctx.settings, token_type="access"))
    if claimed is None:
        return None
    # One statement reads the page and checks the session (one snapshot).
    async with read_only(ctx.services.engine) as connection:
        page = await queries.list_trips(
            connection,
            positions=ctx.services.positions,
            user=claimed,
            statuses=status or None,
            first=20 if first is None else first,
            after=after or None,
            signed_in=claimed.params(),
        )
    return _connection(page) if page.trips else None


def _connection(page: queries.Page) -> TripConnection:
    edges = [TripEdge(cursor=c, node=t) for c, t in zip(page.cursors, page.trips, strict=True)]
    return TripConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        total_count=page.total_count,
    )


async def one_trip(ctx: Context, trip_id: str) -> TripView:
    return await queries.get_trip(
        db=ctx.db, positions=ctx.services.positions, user=await ctx.user(), trip_id=trip_id
    )


@strawberry.type
class TripMutation:
    @mutation(description="Riders: ask for a ride. Every driver is told at once.")
    async def request_trip(self, info: Info, input: RequestTripInput) -> TripView:
        admit("requestTrip")
        ctx = info.context
        return await trips.request_trip(
            db=ctx.db,
            events=ctx.services.events,
            positions=ctx.services.positions,
            settings=ctx.settings,
            limiter=ctx.services.trip_requests,
            user=await ctx.user(),
            pick_up=input.pick_up_address,
            drop_off=input.drop_off_address,
            coordinates=trips.Coordinates(
                pick_up=input.pick_up.pair() if input.pick_up else None,
                drop_off=input.drop_off.pair() if input.drop_off else None,
            ),
            quote_id=input.quote_id or None,
        )

    @mutation(
        description=(
            "Drivers: take a REQUESTED trip (status becomes STARTED). Exactly one driver wins "
            "a race; the others get CONFLICT."
        )
    )
    async def accept_trip(self, info: Info, id: strawberry.ID) -> TripView:
        return await _change(info, trips.accept_trip, trip_id=id)

    @mutation(
        description="The trip's driver: STARTED -> IN_PROGRESS -> COMPLETED, one step at a time."
    )
    async def update_trip_status(
        self, info: Info, id: strawberry.ID, status: TripStatus
    ) -> TripView:
        return await _change(
            info,
            trips.update_trip_status,
            trip_id=id,
            status=status,
            settings=info.context.settings,
        )

    @mutation(description="The trip's rider: cancel while REQUESTED or STARTED.")
    async def cancel_trip(self, info: Info, id: strawberry.ID) -> TripView:
        return await _change(info, trips.cancel_trip, trip_id=id)

    @mutation(
        description="The trip's driver, while STARTED or IN_PROGRESS: publish the car's position."
    )
    async def report_location(
        self, info: Info, trip_id: strawberry.ID, location: LocationInput
    ) -> LocationView:
        return await _change(
            info,
            trips.report_location,
            trip_id=trip_id,
            latitude=location.latitude,
            longitude=location.longitude,
            heading=None if location.heading is strawberry.UNSET else location.heading,
        )

    @mutation(description="The trip's rider, once COMPLETED, once: 1 to 5.")
    async def rate_trip(self, info: Info, id: strawberry.ID, rating: int) -> TripView:
        return await _change(info, trips.rate_trip, trip_id=id, rating=rating)


async def _change(info: Info, change: Callable[..., Awaitable[T]], **args: Any) -> T:
    """A lifecycle step as the caller: the business rule with the request's services."""
    ctx = info.context
    services = ctx.services
    user = await ctx.user()
    return await change(
        db=ctx.db, events=services.events, positions=services.positions, user=user, **args
    )
