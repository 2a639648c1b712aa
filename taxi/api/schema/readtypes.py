"""The read models (taxi/domain/readmodels.py, plain dataclasses) made GraphQL object types in
place: their names, ID fields, descriptions and what is never served are declared here, in
the API layer, so the domain imports no GraphQL while its objects are served as they are
(no conversion per request). Imported by taxi/api/schema/types.py, before any resolver."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeAlias

import strawberry

from taxi.domain.models import TripStatus, UserGroup
from taxi.domain.readmodels import LocationView, PointView, TripView, UserView

# The model enums as GraphQL enums (by member name: RIDER, REQUESTED, ...).
strawberry.enum(UserGroup, name="UserGroup")
strawberry.enum(TripStatus, name="TripStatus")
# TripView.offered: who may see a dispatched trip (taxi/domain/offers.py), never served.
Offered: TypeAlias = strawberry.Private[tuple[int, ...] | None]


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
    offered=Offered,
)
