"""Plain read models shared by queries, events and subscriptions (no ORM, no GraphQL).

A trip event carries a `TripView` as JSON, so the live layer rebuilds exactly what a
query would return without touching the database."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from taxi.models import ACTIVE_STATUSES, TripStatus, User, UserGroup


@dataclass(slots=True)
class UserView:
    id: int
    username: str
    first_name: str
    last_name: str
    group: UserGroup
    photo_url: str | None
    rating: float | None

    @classmethod
    def of(cls, user: User, *, rating: float | None = None) -> UserView:
        assert user.id is not None
        return cls(
            id=user.id,
            username=user.username,
            first_name=user.first_name,
            last_name=user.last_name,
            group=user.group,
            photo_url=media_url(user.photo),
            rating=rating if user.group is UserGroup.DRIVER else None,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserView:
        return cls(**{**data, "group": UserGroup(data["group"])})


@dataclass(slots=True, weakref_slot=True)
class LocationView:
    latitude: float
    longitude: float
    heading: float | None
    recorded_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocationView:
        return cls(**{**data, "recorded_at": datetime.fromisoformat(data["recorded_at"])})


@dataclass(slots=True)
class PointView:
    latitude: float
    longitude: float

    @classmethod
    def of(cls, latitude: float | None, longitude: float | None) -> PointView | None:
        return None if latitude is None or longitude is None else cls(latitude, longitude)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PointView | None:
        return cls(**data) if data else None


@dataclass(slots=True, weakref_slot=True)
class TripView:
    id: uuid.UUID
    created: datetime
    updated: datetime
    pick_up_address: str
    drop_off_address: str
    status: TripStatus
    rider: UserView | None
    driver: UserView | None
    driver_location: LocationView | None
    rating: int | None
    pick_up: PointView | None = None
    drop_off: PointView | None = None
    # Dispatched trips (with a pick-up): the drivers offered it so far, who alone may see
    # it while REQUESTED (taxi/offers.py). None: offered to every driver. Never served.
    offered: tuple[int, ...] | None = None

    @property
    def rider_id(self) -> int | None:
        return self.rider.id if self.rider else None

    @property
    def driver_id(self) -> int | None:
        return self.driver.id if self.driver else None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def location_json(location: LocationView) -> dict[str, Any]:
        return asdict(location)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TripView:
        loc = data.get("driver_location")
        return cls(
            id=uuid.UUID(data["id"]),
            created=datetime.fromisoformat(data["created"]),
            updated=datetime.fromisoformat(data["updated"]),
            pick_up_address=data["pick_up_address"],
            drop_off_address=data["drop_off_address"],
            status=TripStatus(data["status"]),
            rider=UserView.from_json(data["rider"]) if data.get("rider") else None,
            driver=UserView.from_json(data["driver"]) if data.get("driver") else None,
            driver_location=LocationView.from_json(loc) if loc else None,
            rating=data.get("rating"),
            pick_up=PointView.from_json(data.get("pick_up")),
            drop_off=PointView.from_json(data.get("drop_off")),
            offered=None if data.get("offered") is None else tuple(data["offered"]),
        )


def media_url(path: str | None) -> str | None:
    return f"/media/{path}" if path else None
