"""GraphQL object types, built from the plain views (no SQL here)."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import strawberry

from taxi import models
from taxi.context import Context
from taxi.models import TripStatus, UserGroup
from taxi.positions import Availability
from taxi.readmodels import LocationView, PointView, TripView, UserView

Info: TypeAlias = strawberry.Info[Context, None]

# Registers the model enums as GraphQL enums (by member name: RIDER, REQUESTED, ...).
strawberry.enum(models.UserGroup, name="UserGroup")
strawberry.enum(models.TripStatus, name="TripStatus")
strawberry.enum(
    Availability, name="DriverAvailability", description="Where a driver stands for dispatch."
)


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    first_name: str
    last_name: str
    group: UserGroup
    photo_url: str | None = strawberry.field(
        description=(
            "Absolute or server-relative URL of the uploaded photo; null when none was sent."
        )
    )
    rating: float | None = strawberry.field(
        description=(
            "Drivers: mean of the ratings that riders gave their completed trips; "
            "null below 3 ratings or for riders."
        )
    )

    @classmethod
    def of(cls, v: UserView) -> User:
        return cls(
            id=strawberry.ID(str(v.id)),
            username=v.username,
            first_name=v.first_name,
            last_name=v.last_name,
            group=v.group,
            photo_url=v.photo_url,
            rating=v.rating,
        )


@strawberry.type
class Location:
    latitude: float
    longitude: float
    heading: float | None = strawberry.field(
        description="Degrees clockwise from north, when the device knows it."
    )
    recorded_at: datetime

    @classmethod
    def of(cls, v: LocationView) -> Location:
        return cls(
            latitude=v.latitude, longitude=v.longitude, heading=v.heading, recorded_at=v.recorded_at
        )


@strawberry.type(description="A point on the map (WGS 84 degrees).")
class Point:
    latitude: float
    longitude: float

    @classmethod
    def of(cls, v: PointView | None) -> Point | None:
        return None if v is None else cls(latitude=v.latitude, longitude=v.longitude)


@strawberry.type
class Trip:
    id: strawberry.ID = strawberry.field(description="A UUID.")
    created: datetime
    updated: datetime
    pick_up_address: str
    drop_off_address: str
    status: TripStatus
    rider: User | None
    driver: User | None
    driver_location: Location | None = strawberry.field(
        description=(
            "The driver's last reported position while the trip is STARTED or IN_PROGRESS; "
            "null otherwise."
        )
    )
    rating: int | None = strawberry.field(
        description="1 to 5, set by the rider once the trip is COMPLETED."
    )
    pick_up: Point | None = strawberry.field(
        description=(
            "Pick-up coordinates, when the request gave them (the trip is then dispatched "
            "to nearby drivers)."
        )
    )
    drop_off: Point | None = strawberry.field(
        description="Drop-off coordinates, when the request gave them."
    )

    @classmethod
    def of(cls, v: TripView) -> Trip:
        return cls(
            id=strawberry.ID(str(v.id)),
            created=v.created,
            updated=v.updated,
            pick_up_address=v.pick_up_address,
            drop_off_address=v.drop_off_address,
            status=v.status,
            rider=User.of(v.rider) if v.rider else None,
            driver=User.of(v.driver) if v.driver else None,
            driver_location=Location.of(v.driver_location) if v.driver_location else None,
            rating=v.rating,
            pick_up=Point.of(v.pick_up),
            drop_off=Point.of(v.drop_off),
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class TripEdge:
    cursor: str
    node: Trip


@strawberry.type
class TripConnection:
    edges: list[TripEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class AuthPayload:
    access: str = strawberry.field(
        description=(
            "JWT access token; send as 'Authorization: Bearer <access>' or in connection_init."
        )
    )
    refresh: str = strawberry.field(
        description=(
            "JWT refresh token; single use: refreshToken returns a new one and revokes this one."
        )
    )
    user: User
