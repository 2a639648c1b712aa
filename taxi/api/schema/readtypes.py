"""The read models (taxi/domain/readmodels.py, plain dataclasses) made GraphQL object types in
place: their names, ID fields, descriptions and what is never served are declared here, in
the API layer, so the domain imports no GraphQL while its objects are served as they are
(no conversion per request). Imported by taxi/api/schema/types.py, before any resolver."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeAlias

import strawberry

from taxi.domain.models import CancelReason, TripStatus, UserGroup
from taxi.domain.readmodels import (
    FareView,
    LocationView,
    MoneyView,
    PointView,
    TripView,
    UserView,
)

# The model enums as GraphQL enums (by member name: RIDER, REQUESTED, ...).
strawberry.enum(UserGroup, name="UserGroup")
strawberry.enum(TripStatus, name="TripStatus")
strawberry.enum(CancelReason, name="CancelReason", description="Why a trip was CANCELED.")
# TripView.offered and .released: who may see a dispatched trip (taxi/domain/offers.py) and
# who gave it back; never served.
Offered: TypeAlias = strawberry.Private[tuple[int, ...] | None]
Released: TypeAlias = strawberry.Private[tuple[int, ...]]


def _object_type(cls: type, name: str, *, description: str | None = None, **fields: Any) -> None:
    """`cls` as the object type `name`. `fields`: a `strawberry.field(...)` for a field that
    needs more than its annotation, or `strawberry.Private[...]` for one never served.
    Strawberry reads a field's declaration from the class, as if written in its body."""
    for field, declared in fields.items():
        if isinstance(declared, dataclasses.Field):  # strawberry.field(...)
            setattr(cls, field, declared)
        else:
            cls.__annotations__[field] = declared
    strawberry.type(cls, name=name, description=description)


_object_type(
    UserView,
    "User",
    id=strawberry.field(graphql_type=strawberry.ID),
    photo_url=strawberry.field(
        description=(
            "Absolute or server-relative URL of the uploaded photo; null when none was sent."
        )
    ),
    rating=strawberry.field(
        description=(
            "Drivers: mean of the ratings that riders gave their completed trips; "
            "null below 3 ratings or for riders."
        )
    ),
)
_object_type(
    LocationView,
    "Location",
    heading=strawberry.field(description="Degrees clockwise from north, when the device knows it."),
    eta_seconds=strawberry.field(
        default=None,
        description=(
            "On a trip's driverLocation stream: seconds to the trip's next stop (pick-up while "
            "STARTED, drop-off while IN_PROGRESS); null elsewhere."
        ),
    ),
)
_object_type(
    MoneyView,
    "Money",
    description=(
        "An amount of money in minor units (cents), so that no price is ever a rounded float."
    ),
    amount=strawberry.field(description="Minor units of `currency` (e.g. 1240 for 12.40)."),
    currency=strawberry.field(description="ISO 4217 code (FARE_CURRENCY), e.g. EUR."),
)
_object_type(
    FareView,
    "Fare",
    description="What a trip costs.",
    quoted=strawberry.field(
        description=(
            "The up-front price held by the quote the trip was requested with; null without a "
            "quote."
        )
    ),
    final=strawberry.field(
        description=(
            "What the rider pays: set when the trip is COMPLETED (or CANCELED with a fee), "
            "null before."
        )
    ),
    distance_meters=strawberry.field(
        description=(
            "Driven while IN_PROGRESS, metres (from the reported positions); null before COMPLETED."
        )
    ),
    duration_seconds=strawberry.field(
        description="IN_PROGRESS to COMPLETED, seconds; null before COMPLETED."
    ),
)
_object_type(PointView, "Point", description="A point on the map (WGS 84 degrees).")
_object_type(
    TripView,
    "Trip",
    id=strawberry.field(graphql_type=strawberry.ID, description="A UUID."),
    driver_location=strawberry.field(
        description=(
            "The driver's last reported position while the trip is STARTED or IN_PROGRESS; "
            "null otherwise."
        )
    ),
    rating=strawberry.field(description="1 to 5, set by the rider once the trip is COMPLETED."),
    pick_up=strawberry.field(
        default=None,
        description=(
            "Pick-up coordinates, when the request gave them (the trip is then dispatched "
            "to nearby drivers)."
        ),
    ),
    drop_off=strawberry.field(
        default=None, description="Drop-off coordinates, when the request gave them."
    ),
    cancel_reason=strawberry.field(
        default=None, description="Why the trip was CANCELED; null otherwise."
    ),
    arrived_at=strawberry.field(
        default=None,
        description=(
            "When the driver first came within ARRIVAL_METERS of the pick-up while STARTED; "
            "null before."
        ),
    ),
    pick_up_eta_seconds=strawberry.field(
        default=None,
        description=(
            "While STARTED and not yet arrived: seconds until the driver reaches the pick-up, "
            "from the last position."
        ),
    ),
    drop_off_eta_seconds=strawberry.field(
        default=None,
        description="While IN_PROGRESS: seconds until the drop-off, from the last position.",
    ),
    offered=Offered,
    released=Released,
)
