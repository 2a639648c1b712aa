"""SQLModel tables. Timestamps are timezone-aware UTC on every backend."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Relationship, SQLModel

from taxi.domain.usernames import normalize


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps them as naive UTC text."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum], length: int = 16) -> sa.Enum:
    # Stored as the lower/upper-case value text, not a native PG enum: migrations stay
    # identical on both backends and adding a value needs no ALTER TYPE.
    return sa.Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class UserGroup(str, enum.Enum):
    RIDER = "rider"
    DRIVER = "driver"


class TripStatus(str, enum.Enum):
    REQUESTED = "REQUESTED"
    STARTED = "STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"


ACTIVE_STATUSES = (TripStatus.REQUESTED, TripStatus.STARTED, TripStatus.IN_PROGRESS)
# A driver is on the trip: its position is the trip's (driverLocation), availability ON_TRIP.
UNDER_WAY = (TripStatus.STARTED, TripStatus.IN_PROGRESS)


class CancelReason(str, enum.Enum):
    RIDER_CANCELED = "RIDER_CANCELED"
    NO_DRIVER_FOUND = "NO_DRIVER_FOUND"
    RIDER_NO_SHOW = "RIDER_NO_SHOW"
    ACCOUNT_DEACTIVATED = "ACCOUNT_DEACTIVATED"


class User(SQLModel, table=True):
    __tablename__ = "user"
    # Ids are never reused: without AUTOINCREMENT SQLite hands a deleted user's id to
    # the next one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=150, sa_column_kwargs={"unique": True}, nullable=False)
    # taxi.domain.usernames.normalize(username), kept by the mapper events below: the unique
    # index that makes `Ada`, `ada` and a full-width `Ada` one name.
    username_key: str = Field(default="", max_length=150, unique=True, index=True)
    first_name: str = Field(max_length=150)
    last_name: str = Field(max_length=150)
    group: UserGroup = Field(sa_type=_enum(UserGroup))
    password: str = Field(max_length=255)
    photo: str | None = Field(default=None, max_length=255)
    is_active: bool = True
    is_staff: bool = False
    date_joined: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


@sa.event.listens_for(User, "before_insert")
@sa.event.listens_for(User, "before_update")
def _normalize_username(_mapper: Any, _conn: Any, user: User) -> None:
    # Every writer (sign-up, createsuperuser, the admin UI) gets the key right.
    user.username_key = normalize(user.username)


class AuthSession(SQLModel, table=True):
    """One per log-in: the family of every token refreshed from it. Access and refresh
    tokens carry its id (`sid`); a revoked or deleted row ends them all."""

    __tablename__ = "auth_session"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefreshToken(SQLModel, table=True):
    """One row per issued refresh token; rotation revokes it with a conditional UPDATE."""

    __tablename__ = "refresh_token"

    jti: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    session_id: str | None = Field(
        default=None, foreign_key="auth_session.id", index=True, ondelete="CASCADE", max_length=32
    )
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def _unique_while(name: str, column: str, statuses: tuple[str, ...]) -> sa.Index:
    """A partial unique index: `column` unique among the trips in `statuses`."""
    where = sa.text(f"status IN ({', '.join(repr(status) for status in statuses)})")
    return sa.Index(name, column, unique=True, sqlite_where=where, postgresql_where=where)


class Trip(SQLModel, table=True):
    __tablename__ = "trip"
    __table_args__ = (
        sa.Index("ix_trip_rider_created", "rider_id", "created", "id"),
        sa.Index("ix_trip_driver_created", "driver_id", "created", "id"),
        sa.Index("ix_trip_status_created", "status", "created", "id"),
        # Demand near a pick-up (surge): the trips requested in the last minutes.
        sa.Index("ix_trip_created", "created"),
        # A driver's earnings: their trips by completion time.
        sa.Index("ix_trip_driver_ended", "driver_id", "ended_at"),
        # The database, not Python, keeps a rider to one active trip and a driver to
        # one trip under way: a concurrent second one fails on these partial indexes.
        _unique_while("uq_trip_rider_active", "rider_id", ("REQUESTED", "STARTED", "IN_PROGRESS")),
        _unique_while("uq_trip_driver_active", "driver_id", ("STARTED", "IN_PROGRESS")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    pick_up_address: str = Field(max_length=255)
    drop_off_address: str = Field(max_length=255)
    status: TripStatus = Field(default=TripStatus.REQUESTED, sa_type=_enum(TripStatus))
    rider_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    driver_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    rating: int | None = None
    # Set when the request gave coordinates: the trip is then dispatched in waves.
    pick_up_latitude: float | None = None
    pick_up_longitude: float | None = None
    drop_off_latitude: float | None = None
    drop_off_longitude: float | None = None
    # No longer written: positions live in the position store (taxi/domain/positions.py).
    driver_latitude: float | None = None
    driver_longitude: float | None = None
    driver_heading: float | None = None
    driver_located_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The ride's life (rides.graphql). Money in minor units of FARE_CURRENCY.
    cancel_reason: CancelReason | None = Field(default=None, sa_type=_enum(CancelReason, length=24))
    arrived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    picked_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # IN_PROGRESS
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # COMPLETED/CANCELED
    fare_surge: float = 1.0
    fare_currency: str = Field(default="EUR", max_length=3)  # FARE_CURRENCY when requested
    fare_quoted: int | None = None  # the quote's price, held
    quoted_meters: int | None = None  # the quote's route length (the 25 % rule)
    fare_final: int | None = None
    driven_meters: int | None = None  # summed from positions while IN_PROGRESS
    # For the admin's trip list (names beside the ids). `raise`: never loaded by
    # accident; a reader asks for them (selectinload), as the admin does.
    # (The target is named here: SQLModel cannot read `User | None` as a postponed
    # annotation.)
    rider: User | None = Relationship(
        sa_relationship=sa.orm.relationship(User, foreign_keys="[Trip.rider_id]", lazy="raise")
    )
    driver: User | None = Relationship(
        sa_relationship=sa.orm.relationship(User, foreign_keys="[Trip.driver_id]", lazy="raise")
    )


class TripOffer(SQLModel, table=True):
    """A dispatched trip was offered to this driver, in this wave: the driver may see
    and accept it while it is REQUESTED (taxi/domain/offers.py)."""

    __tablename__ = "trip_offer"

    trip_id: uuid.UUID = Field(foreign_key="trip.id", primary_key=True, ondelete="CASCADE")
    driver_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    wave: int
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DispatchWave(SQLModel, table=True):
    """The durable schedule: a requested trip's next wave (or its expiry) and when it is
    due. The row is claimed and advanced in the transaction that records the wave's
    offers, so each wave happens once whatever the number of processes
    (taxi/domain/services/dispatch.py)."""

    __tablename__ = "dispatch_wave"
    __table_args__ = (sa.Index("ix_dispatch_wave_due", "due_at"),)

    trip_id: uuid.UUID = Field(foreign_key="trip.id", primary_key=True, ondelete="CASCADE")
    wave: int
    due_at: datetime = Field(sa_type=UTCDateTime)
    # Still REQUESTED then: CANCELED with NO_DRIVER_FOUND (DISPATCH_TIMEOUT_SECONDS after the
    # request or the release). Every trip has a row, dispatched or not; NULL only in rows
    # from before 0004, filled in by the first pass (migration 0005).
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
