"""The ride's life (rides.graphql): estimateFare, earnings and releaseTrip."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from taxi.api.resolvers.trips import PointInput
from taxi.api.schema.types import Info, field, mutation
from taxi.domain.admission import admit
from taxi.domain.readmodels import MoneyView, PointView, TripView
from taxi.domain.services import earnings, pricing, rides


@strawberry.type(
    description="A price for a ride between two points, offered before the ride is requested."
)
class FareQuote:
    id: strawberry.ID = strawberry.field(
        description="Opaque and self-contained (signed): pass it to requestTrip to hold this price."
    )
    pick_up: PointView
    drop_off: PointView
    distance_meters: int = strawberry.field(description="Estimated route length, metres.")
    duration_seconds: int = strawberry.field(description="Estimated ride time, seconds.")
    surge: float = strawberry.field(
        description=(
            "Demand against supply near the pick-up: 1.0 normally, at most FARE_SURGE_MAX."
        )
    )
    price: MoneyView
    cars_nearby: int = strawberry.field(
        description=(
            "Available cars near the pick-up right now, and the nearest one's time to get "
            "there (null when none)."
        )
    )
    pick_up_eta_seconds: int | None
    expires_at: datetime

    @classmethod
    def of(cls, v: pricing.QuoteView) -> FareQuote:
        q = v.quote
        return cls(
            id=strawberry.ID(v.id),
            pick_up=PointView(latitude=q.pick_up[0], longitude=q.pick_up[1]),
            drop_off=PointView(latitude=q.drop_off[0], longitude=q.drop_off[1]),
            distance_meters=q.meters,
            duration_seconds=q.seconds,
            surge=q.surge,
            price=MoneyView(amount=q.price, currency=v.currency),
            cars_nearby=v.cars,
            pick_up_eta_seconds=v.pick_up_eta,
            expires_at=v.expires_at,
        )


@strawberry.type(description="A driver's completed trips over a period.")
class Earnings:
    trips: int
    total: MoneyView
    distance_meters: int


@strawberry.type
class RideQuery:
    @field(
        description=(
            "Riders: a price for a ride between two points, valid for FARE_QUOTE_TTL seconds."
        )
    )
    async def estimate_fare(
        self, info: Info, pick_up: PointInput, drop_off: PointInput
    ) -> FareQuote:
        admit("estimateFare")
        ctx = info.context
        quote = await pricing.estimate_fare(
            db=ctx.db,
            positions=ctx.services.positions,
            router=ctx.services.router,
            settings=ctx.settings,
            user=await ctx.user(),
            pick_up=pick_up.pair(),
            drop_off=drop_off.pair(),
        )
        return FareQuote.of(quote)

    @field(description="Drivers: what their COMPLETED trips earned, completed in [from, to).")
    async def earnings(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
    ) -> Earnings:
        ctx = info.context
        got = await earnings.earnings(
            db=ctx.db, settings=ctx.settings, user=await ctx.user(), start=from_, end=to
        )
        return Earnings(
            trips=got.trips,
            total=MoneyView(amount=got.total, currency=got.currency),
            distance_meters=got.distance_meters,
        )


@strawberry.type
class RideMutation:
    @mutation(
        description=(
            "The trip's driver, while STARTED: give the trip back. It is REQUESTED again and "
            "offered to other drivers (never to this one again); the driver is AVAILABLE. With "
            "noShow (only after waiting NO_SHOW_SECONDS since arrivedAt) the trip is CANCELED "
            "with RIDER_NO_SHOW and the no-show fee instead."
        )
    )
    async def release_trip(
        self, info: Info, id: strawberry.ID, no_show: bool | None = False
    ) -> TripView:
        ctx = info.context
        services = ctx.services
        return await rides.release_trip(
            db=ctx.db,
            events=services.events,
            positions=services.positions,
            settings=ctx.settings,
            user=await ctx.user(),
            trip_id=id,
            no_show=bool(no_show),
        )
