"""Dispatch: drivers' state and positions, and nearbyCars (dispatch.graphql)."""

from __future__ import annotations

import strawberry

from taxi.api.resolvers.trips import LocationInput, PointInput
from taxi.api.schema.types import Info, field, mutation
from taxi.domain.positions import Availability
from taxi.domain.readmodels import LocationView
from taxi.domain.services import drivers


@strawberry.type(description="The signed-in driver's dispatch state.")
class DriverState:
    availability: Availability
    position: LocationView | None = strawberry.field(
        description="The last position reported while online; null when none is fresh."
    )

    @classmethod
    def of(cls, v: drivers.StateView) -> DriverState:
        return cls(availability=v.availability, position=v.position)


@strawberry.type(
    description="An available car near a point. Anonymous: no driver identity is exposed."
)
class NearbyCar:
    location: LocationView
    distance_meters: float = strawberry.field(
        description="Great-circle distance from the point asked about, in metres."
    )
    eta_seconds: int = strawberry.field(
        description="Seconds for this car to reach the point asked about."
    )


def _heading(position: LocationInput) -> float | None:
    return None if position.heading is strawberry.UNSET else position.heading


@strawberry.type
class DriverQuery:
    @field(description="Any signed-in user: available cars near a point, nearest first.")
    async def nearby_cars(
        self, info: Info, near: PointInput, radius_meters: int | None = 2000, first: int | None = 10
    ) -> list[NearbyCar]:
        ctx = info.context
        cars = await drivers.nearby_cars(
            positions=ctx.services.positions,
            settings=ctx.settings,
            user=await ctx.user(),
            latitude=near.latitude,
            longitude=near.longitude,
            radius=2000 if radius_meters is None else radius_meters,
            first=10 if first is None else first,
        )
        return [
            NearbyCar(location=c.location, distance_meters=c.distance, eta_seconds=c.eta_seconds)
            for c in cars
        ]

    @field(description="Drivers: their own dispatch state.")
    async def driver_state(self, info: Info) -> DriverState:
        ctx = info.context
        return DriverState.of(
            await drivers.driver_state(
                positions=ctx.services.positions, settings=ctx.settings, user=await ctx.user()
            )
        )


@strawberry.type
class DriverMutation:
    @mutation(description="Drivers: start receiving offers of trips requested near this position.")
    async def go_online(self, info: Info, position: LocationInput) -> DriverState:
        return await _report(info, position, online=True)

    @mutation(description="Drivers: stop receiving offers. CONFLICT while driving a trip.")
    async def go_offline(self, info: Info) -> DriverState:
        ctx = info.context
        return DriverState.of(
            await drivers.go_offline(
                db=ctx.db, positions=ctx.services.positions, user=await ctx.user()
            )
        )

    @mutation(
        description=(
            "Drivers, while online: where the car is now (every few seconds). While driving a "
            "trip it also reaches that trip's driverLocation watchers."
        )
    )
    async def update_position(self, info: Info, position: LocationInput) -> DriverState:
        return await _report(info, position, online=False)


async def _report(info: Info, position: LocationInput, *, online: bool) -> DriverState:
    ctx = info.context
    return DriverState.of(
        await drivers.update_position(
            reports=ctx.services.reports,
            user=await ctx.user(),
            latitude=position.latitude,
            longitude=position.longitude,
            heading=_heading(position),
            online=online,
        )
    )
