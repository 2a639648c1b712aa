"""The read models: what queries, events and subscriptions serve, and the GraphQL object
types themselves (each class below is its Strawberry type: plain attributes, read as
they are, with no conversion and no resolver per field).

A trip event carries a `TripView` as JSON (`to_json`, `from_json`: generic, from the
dataclass fields), so the live layer rebuilds exactly what a query would return
without touching the database. A new trip field is declared once, here."""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import orjson
import strawberry

from taxi.domain.models import CancelReason, TripStatus, UserGroup

T = TypeVar("T")

# The model enums as GraphQL enums (by member name: RIDER, REQUESTED, ...).
strawberry.enum(UserGroup, name="UserGroup")
strawberry.enum(TripStatus, name="TripStatus")
strawberry.enum(CancelReason, name="CancelReason", description="Why a trip was CANCELED.")


@strawberry.type(name="User")
class UserView:
    id: int = strawberry.field(graphql_type=strawberry.ID)
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


@strawberry.type(name="Location")
class LocationView:
    latitude: float
    longitude: float
    heading: float | None = strawberry.field(
        description="Degrees clockwise from north, when the device knows it."
    )
    recorded_at: datetime
    eta_seconds: int | None = strawberry.field(
        default=None,
        description=(
            "On a trip's driverLocation stream: seconds to the trip's next stop (pick-up while "
            "STARTED, drop-off while IN_PROGRESS); null elsewhere."
        ),
    )


@strawberry.type(
    name="Money",
    description=(
        "An amount of money in minor units (cents), so that no price is ever a rounded float."
    ),
)
class MoneyView:
    amount: int = strawberry.field(description="Minor units of `currency` (e.g. 1240 for 12.40).")
    currency: str = strawberry.field(description="ISO 4217 code (FARE_CURRENCY), e.g. EUR.")

    @classmethod
    def of(cls, amount: int | None, currency: str) -> MoneyView | None:
        return None if amount is None else cls(amount=amount, currency=currency)


@strawberry.type(name="Fare", description="What a trip costs.")
class FareView:
    quoted: MoneyView | None = strawberry.field(
        description=(
            "The up-front price held by the quote the trip was requested with; null without a "
            "quote."
        )
    )
    final: MoneyView | None = strawberry.field(
        description=(
            "What the rider pays: set when the trip is COMPLETED (or CANCELED with a fee), "
            "null before."
        )
    )
    distance_meters: int | None = strawberry.field(
        description=(
            "Driven while IN_PROGRESS, metres (from the reported positions); null before COMPLETED."
        )
    )
    duration_seconds: int | None = strawberry.field(
        description="IN_PROGRESS to COMPLETED, seconds; null before COMPLETED."
    )
    surge: float


@strawberry.type(name="Point", description="A point on the map (WGS 84 degrees).")
class PointView:
    latitude: float
    longitude: float

    @classmethod
    def of(cls, latitude: float | None, longitude: float | None) -> PointView | None:
        if latitude is None or longitude is None:
            return None
        return cls(latitude=latitude, longitude=longitude)


@strawberry.type(name="Trip")
class TripView:
    id: uuid.UUID = strawberry.field(graphql_type=strawberry.ID, description="A UUID.")
    created: datetime
    updated: datetime
    pick_up_address: str
    drop_off_address: str
    status: TripStatus
    rider: UserView | None
    driver: UserView | None
    driver_location: LocationView | None = strawberry.field(
        description=(
            "The driver's last reported position while the trip is STARTED or IN_PROGRESS; "
            "null otherwise."
        )
    )
    rating: int | None = strawberry.field(
        description="1 to 5, set by the rider once the trip is COMPLETED."
    )
    pick_up: PointView | None = strawberry.field(
        default=None,
        description=(
            "Pick-up coordinates, when the request gave them (the trip is then dispatched "
            "to nearby drivers)."
        ),
    )
    drop_off: PointView | None = strawberry.field(
        default=None, description="Drop-off coordinates, when the request gave them."
    )
    fare: FareView | None = None
    cancel_reason: CancelReason | None = strawberry.field(
        default=None, description="Why the trip was CANCELED; null otherwise."
    )
    arrived_at: datetime | None = strawberry.field(
        default=None,
        description=(
            "When the driver first came within ARRIVAL_METERS of the pick-up while STARTED; "
            "null before."
        ),
    )
    pick_up_eta_seconds: int | None = strawberry.field(
        default=None,
        description=(
            "While STARTED and not yet arrived: seconds until the driver reaches the pick-up, "
            "from the last position."
        ),
    )
    drop_off_eta_seconds: int | None = strawberry.field(
        default=None,
        description="While IN_PROGRESS: seconds until the drop-off, from the last position.",
    )
    # Dispatched trips (with a pick-up): the drivers offered it so far, who alone may see
    # it while REQUESTED (taxi/domain/offers.py). None: offered to every driver. Never served.
    offered: strawberry.Private[tuple[int, ...] | None] = None
    # Drivers who gave the trip back (releaseTrip): never in their pool again, dispatched or
    # not. Never served.
    released: strawberry.Private[tuple[int, ...]] = ()

    @property
    def rider_id(self) -> int | None:
        return self.rider.id if self.rider else None

    @property
    def driver_id(self) -> int | None:
        return self.driver.id if self.driver else None


def media_url(path: str | None) -> str | None:
    return f"/media/{path}" if path else None


# -- JSON, for events: encoded by orjson (dataclasses, datetimes, UUIDs and enums
# natively), decoded by a converter derived once per class from its type hints. --------


def to_json(view: object) -> bytes:
    return orjson.dumps(view, default=_json_default)


def _json_default(value: object) -> str:
    # asyncpg hands back its own uuid.UUID subclass, which orjson does not serialize.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def from_json(cls: type[T], data: Any) -> T:
    """`cls` (a read model) from what `to_json` wrote of one, decoded."""
    load: Callable[[Any], T] = _loader(cls)
    return load(data)


_loaders: dict[object, Callable[[Any], Any]] = {}


def _loader(tp: object) -> Callable[[Any], Any]:
    load = _loaders.get(tp)
    if load is None:
        load = _loaders[tp] = _build(tp)
    return load


def _build(tp: object) -> Callable[[Any], Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        load = _loader(inner)
        return lambda v: None if v is None else load(v)
    if origin is tuple:
        item = _loader(typing.get_args(tp)[0])
        return lambda v: tuple(item(x) for x in v)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        fields = {k: _loader(h) for k, h in typing.get_type_hints(tp).items()}
        return lambda v: tp(**{k: load(v[k]) for k, load in fields.items() if k in v})
    if tp is datetime:
        return datetime.fromisoformat
    if tp is uuid.UUID or (isinstance(tp, type) and issubclass(tp, Enum)):
        return typing.cast(Callable[[Any], Any], tp)
    return lambda v: v  # str, int, float, bool: as JSON has them
