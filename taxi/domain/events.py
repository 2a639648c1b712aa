"""Trip events: their shape, the channels they travel on, publishing after commit.

Every channel name is made here. An event's message is JSON text carrying the complete
trip state (trip, rider, driver, position), so no subscriber ever queries per event."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

import orjson
from broadcaster import Broadcast
from redis.exceptions import RedisError

from taxi.core.broadcast import publish_many as publish_many  # tests observe it here
from taxi.core.cluster import RESYNC as RESYNC
from taxi.domain.readmodels import LocationView, TripView, from_json, to_json

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """What happened: the `kind` of every message."""

    REQUESTED = "requested"  # a rider asked for a ride
    OFFERED = "offered"  # a dispatch wave offered the trip to a driver (their channel)
    ACCEPTED = "accepted"
    STATUS = "status"  # the driver moved the trip on
    ARRIVED = "arrived"  # the driver reached the pick-up
    RELEASED = "released"  # the driver gave the trip back: REQUESTED again
    EXPIRED = "expired"  # nobody took it in time: CANCELED (NO_DRIVER_FOUND)
    CANCELED = "canceled"
    RATED = "rated"
    LOCATION = "location"  # a position of the trip's car
    SESSION_ENDED = "session_ended"
    RESYNC = RESYNC  # not a message: the backend reconnected


@dataclass(eq=False)
class Event:
    """A decoded message, as the hub hands it to every local watcher of its channel:
    what is decoded from it is decoded once and shared by them all."""

    kind: Kind
    key: str
    body: dict[str, Any]
    # Encoded results per (live query, view) (taxi/api/strategies/live.py).
    frames: dict[tuple[object, int], bytes] = field(default_factory=dict)

    @cached_property
    def trip(self) -> TripView:
        return from_json(TripView, self.body["trip"])

    @cached_property
    def redacted(self) -> TripView:
        """The trip as drivers who may not see it learn that it left the pool: without
        who took it."""
        return dataclasses.replace(self.trip, driver=None, driver_location=None)

    @cached_property
    def location(self) -> LocationView:
        return from_json(LocationView, self.body["location"])

    @property
    def left_pool(self) -> bool:
        return bool(self.body.get("left_pool"))

    @property
    def parties(self) -> list[int | None]:
        """Who may watch a location event (rider, driver)."""
        parties: list[int | None] = self.body["parties"]
        return parties


RESYNC_EVENT = Event(Kind.RESYNC, RESYNC, {})

# Channel names below are relative: on the backend each is `<CHANNEL_PREFIX>:<name>`, so
# two deployments (or test runs) sharing one Redis never see each other's events.
POOL = "pool"  # trips entering or leaving the pool of requested trips
TRIPS = "trips"  # every change to every trip (tripsUpdated filters by visibility)
# Ended sessions and users: every process closes its matching sockets
# (taxi/transport/live/registry.py).
SESSIONS = "sessions"


@dataclass(slots=True)  # not frozen: one per position report (as Fix)
class Located:
    """A position of a trip's car, and who may watch it (rider, driver)."""

    trip_id: uuid.UUID
    location: LocationView
    parties: tuple[int | None, ...]


def trip_channel(trip_id: uuid.UUID | str) -> str:
    return f"trip:{trip_id}"


def location_channel(trip_id: uuid.UUID | str) -> str:
    return f"trip:{trip_id}:location"


def driver_channel(driver_id: int) -> str:
    """One driver's own channel: the dispatched trips offered to them (kind "offered")."""
    return f"driver:{driver_id}"


def full_channel(prefix: str, name: str) -> str:
    """The name on the broadcast backend."""
    return f"{prefix}:{name}"


def _encode(kind: Kind, key: str, body: dict[str, Any]) -> str:
    # `at` is the publish time (epoch seconds), for latency measurements.
    message = {"kind": kind, "key": key, "at": time.time(), **body}
    return to_json(message).decode()


def decode(message: str) -> Event:
    """Raises ValueError for a message that is not one of ours."""
    data = orjson.loads(message)
    if not isinstance(data, dict):
        raise ValueError("not an event")
    try:
        return Event(Kind(data["kind"]), str(data["key"]), data)
    except KeyError as exc:
        raise ValueError("not an event") from exc


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for some channels (`Publisher.trip_change`, `Publisher.offer`)."""

    channels: tuple[str, ...]
    message: str


class Publisher:
    """Publishes committed changes. Call only after the transaction committed: a
    publish failure is logged, never raised, because the change itself is durable and
    watchers re-read the state when the backend comes back.

    The independent messages of one change (a trip's channels, the offered drivers'
    channels) go out together (`send`): each awaited publish is a round trip, and
    `requestTrip` answered only after all of them, one after another."""

    def __init__(self, broadcast: Broadcast, *, prefix: str) -> None:
        self.broadcast = broadcast
        self.prefix = prefix

    async def send(self, *outgoing: Outgoing) -> None:
        messages = [
            (full_channel(self.prefix, channel), out.message)
            for out in outgoing
            for channel in out.channels
        ]
        if len(messages) == 1:
            await self._publish(*messages[0])
        elif messages:
            # One pipeline, not a command each: a command each took a pooled connection,
            # a timeout and a round trip of its own (3.4 % of a rush-hour server's CPU
            # went to these publishes, a requestTrip's wave to five drivers seven of them).
            try:
                await publish_many(self.broadcast, messages)
            except (RedisError, OSError) as exc:
                log.warning("publishing to %d channels failed: %r", len(messages), exc)

    async def _send(self, channels: list[str], message: str) -> None:
        await self.send(Outgoing(tuple(channels), message))

    async def _publish(self, channel: str, message: str) -> None:
        try:
            await self.broadcast.publish(channel, message)
        except (RedisError, OSError) as exc:
            log.warning("publish to %s failed: %r", channel, exc)

    @staticmethod
    def trip_change(trip: TripView, *, kind: Kind, left_pool: bool = False) -> Outgoing:
        body = {"trip": trip, "left_pool": left_pool}
        channels = [trip_channel(trip.id), TRIPS]
        # A dispatched trip is never in the common pool: its offers travel on the
        # offered drivers' own channels (offer()), so traffic grows with them only.
        if (kind in (Kind.REQUESTED, Kind.RELEASED) or left_pool) and trip.offered is None:
            channels.append(POOL)
        return Outgoing(tuple(channels), _encode(kind, str(trip.id), body))

    @staticmethod
    def offer(trip: TripView, driver_ids: list[int]) -> Outgoing:
        """A wave: the trip to each newly offered driver, on their own channel."""
        channels = tuple(driver_channel(d) for d in driver_ids)
        message = _encode(Kind.OFFERED, str(trip.id), {"trip": trip}) if channels else ""
        return Outgoing(channels, message)

    async def trip_changed(self, trip: TripView, *, kind: Kind, left_pool: bool = False) -> None:
        await self.send(self.trip_change(trip, kind=kind, left_pool=left_pool))

    async def location_reported(
        self, trip_id: uuid.UUID, location: LocationView, *, parties: tuple[int | None, ...]
    ) -> None:
        """A position of the trip's car; `parties` (rider, driver) may watch it. No trip
        state: the per-report path reads nothing from the database."""
        await self.locations_reported([Located(trip_id, location, parties)])

    async def locations_reported(self, located: Sequence[Located]) -> None:
        """Positions of several trips' cars (one loop pass's reports) in one round trip."""
        if not located:
            return
        messages = [
            (
                full_channel(self.prefix, location_channel(one.trip_id)),
                _encode(
                    Kind.LOCATION,
                    str(one.trip_id),
                    {"parties": one.parties, "location": one.location},
                ),
            )
            for one in located
        ]
        try:
            await publish_many(self.broadcast, messages)
        except (RedisError, OSError) as exc:
            log.warning("publishing %d locations failed: %r", len(messages), exc)

    async def session_ended(self, *, user_id: int, sid: str | None = None) -> None:
        """`sid` ended (log-out, a replayed refresh token) or, without one, every
        session of `user_id` (deactivated or deleted)."""
        key = f"session:{sid}" if sid else f"user:{user_id}"
        body = {"user_id": user_id, "sid": sid}
        await self._send([SESSIONS], _encode(Kind.SESSION_ENDED, key, body))
