"""The read models: what queries, events and subscriptions serve. Plain dataclasses here
(the domain knows no GraphQL); the API layer makes each one its GraphQL object type in place
(taxi/api/schema/readtypes.py), so they are served as they are: no conversion, no resolver
per field.

A trip event carries a `TripView` as JSON (`to_json`, `from_json`: generic, from the
dataclass fields), so the live layer rebuilds exactly what a query would return
without touching the database. A new trip field is declared once, here."""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import orjson

from taxi.domain.models import CancelReason, TripStatus, UserGroup

T = TypeVar("T")


@dataclass(kw_only=True)
class UserView:
    id: int
    username: str
    first_name: str
    last_name: str
    group: UserGroup
    photo_url: str | None  # absolute or server-relative; None when none was sent
    rating: float | None  # drivers: mean of their riders' ratings, from 3 ratings on


@dataclass(kw_only=True)
class LocationView:
    latitude: float
    longitude: float
    heading: float | None  # degrees clockwise from north, when the device knows it
    recorded_at: datetime
    eta_seconds: int | None = None  # on a trip's driverLocation stream: to its next stop


@dataclass(kw_only=True)
class MoneyView:
    amount: int  # minor units (cents): no price is ever a rounded float
    currency: str  # ISO 4217 (FARE_CURRENCY)

    @classmethod
    def of(cls, amount: int | None, currency: str) -> MoneyView | None:
        return None if amount is None else cls(amount=amount, currency=currency)


@dataclass(kw_only=True)
class FareView:
    quoted: MoneyView | None  # held by the quote the trip was requested with
    final: MoneyView | None  # set when COMPLETED (or CANCELED with a fee)
    distance_meters: int | None  # driven while IN_PROGRESS; None before COMPLETED
    duration_seconds: int | None  # IN_PROGRESS to COMPLETED; None before COMPLETED
    surge: float


@dataclass(kw_only=True)
class PointView:
    latitude: float
    longitude: float

    @classmethod
    def of(cls, latitude: float | None, longitude: float | None) -> PointView | None:
        if latitude is None or longitude is None:
            return None
        return cls(latitude=latitude, longitude=longitude)


@dataclass(kw_only=True)
class TripView:
    id: uuid.UUID
    created: datetime
    updated: datetime
    pick_up_address: str
    drop_off_address: str
    status: TripStatus
    rider: UserView | None
    driver: UserView | None
    driver_location: LocationView | None  # while STARTED or IN_PROGRESS
    rating: int | None  # 1 to 5, by the rider once COMPLETED
    pick_up: PointView | None = None
    drop_off: PointView | None = None
    fare: FareView | None = None
    cancel_reason: CancelReason | None = None
    arrived_at: datetime | None = None  # first within ARRIVAL_METERS of the pick-up
    pick_up_eta_seconds: int | None = None  # while STARTED and not yet arrived
    drop_off_eta_seconds: int | None = None  # while IN_PROGRESS
    # Dispatched trips (with a pick-up): the drivers offered it so far, who alone may see
    # it while REQUESTED (taxi/domain/offers.py). None: offered to every driver. Never
    # served (taxi/api/schema/readtypes.py keeps it and `released` out of the schema).
    offered: tuple[int, ...] | None = None
    # Drivers who gave the trip back (releaseTrip): never in their pool again, dispatched or
    # not.
    released: tuple[int, ...] = ()

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
