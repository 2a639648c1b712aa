"""Trip events: their shape, the channels they travel on, publishing after commit.

Every channel name is made here. An event's message is JSON text carrying the complete
trip state (trip, rider, driver, position), so no subscriber ever queries per event."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

import orjson
from broadcaster import Broadcast
from redis.exceptions import RedisError

from taxi.readmodels import LocationView, TripView

log = logging.getLogger(__name__)

# A decoded event, as the hub hands it to every local watcher of its channel. Views
# decoded from it are cached in it under `_`-keys, so every watcher shares them.
Item = dict[str, Any]

# Sent by the broadcast backend on a channel after it reconnected: messages may have
# been missed, so watchers re-read the current state once.
RESYNC = "__resync__"

# Channel names below are relative: on the backend each is `<CHANNEL_PREFIX>:<name>`, so
# two deployments (or test runs) sharing one Redis never see each other's events.
POOL = "pool"  # trips entering or leaving the pool of requested trips
TRIPS = "trips"  # every change to every trip (tripsUpdated filters by visibility)
# Ended sessions and users: every process closes its matching sockets (taxi/sockets.py).
SESSIONS = "sessions"


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


def _json_default(value: object) -> str:
    # asyncpg hands back its own uuid.UUID subclass (e.g. after a refresh), which
    # orjson does not serialize natively.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _encode(kind: str, key: str, body: dict[str, Any]) -> str:
    # `at` is the publish time (epoch seconds), for latency measurements.
    message = {"kind": kind, "key": key, "at": time.time(), **body}
    return orjson.dumps(message, default=_json_default).decode()


def decode(message: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(message)
    return data


def trip_of(item: dict[str, Any]) -> TripView:
    """The event's trip, decoded once per process: the hub hands the same item to every
    local subscriber, so they all get the same view object."""
    view = item.get("_view")
    if view is None:
        view = item["_view"] = TripView.from_json(item["trip"])
    return view  # type: ignore[no-any-return]


def redacted_trip_of(item: dict[str, Any]) -> TripView:
    """The trip as drivers who may not see it learn that it left the pool: without
    who took it."""
    view = item.get("_redacted")
    if view is None:
        view = item["_redacted"] = dataclasses.replace(
            trip_of(item), driver=None, driver_location=None
        )
    return view  # type: ignore[no-any-return]


def location_of(item: dict[str, Any]) -> LocationView:
    view = item.get("_location")
    if view is None:
        view = item["_location"] = LocationView.from_json(item["location"])
    return view  # type: ignore[no-any-return]


class Publisher:
    """Publishes committed changes. Call only after the transaction committed: a
    publish failure is logged, never raised, because the change itself is durable and
    watchers re-read the state when the backend comes back."""

    def __init__(self, broadcast: Broadcast, *, prefix: str) -> None:
        self.broadcast = broadcast
        self.prefix = prefix

    async def _send(self, channels: list[str], message: str) -> None:
        for channel in channels:
            try:
                await self.broadcast.publish(full_channel(self.prefix, channel), message)
            except (RedisError, OSError) as exc:
                log.warning("publish to %s failed: %r", channel, exc)

    async def trip_changed(self, trip: TripView, *, kind: str, left_pool: bool = False) -> None:
        body = {"trip": trip.to_json(), "left_pool": left_pool}
        message = _encode(kind, str(trip.id), body)
        channels = [trip_channel(trip.id), TRIPS]
        # A dispatched trip is never in the common pool: its offers travel on the
        # offered drivers' own channels (offered()), so traffic grows with them only.
        if (kind == "requested" or left_pool) and trip.offered is None:
            channels.append(POOL)
        await self._send(channels, message)

    async def offered(self, trip: TripView, driver_ids: list[int]) -> None:
        """A wave: the trip to each newly offered driver, on their own channel."""
        if driver_ids:
            message = _encode("offered", str(trip.id), {"trip": trip.to_json()})
            await self._send([driver_channel(d) for d in driver_ids], message)

    async def location_reported(
        self, trip_id: uuid.UUID, location: LocationView, *, parties: tuple[int | None, ...]
    ) -> None:
        """A position of the trip's car; `parties` (rider, driver) may watch it. No trip
        state: the per-report path reads nothing from the database."""
        body = {"parties": parties, "location": TripView.location_json(location)}
        await self._send([location_channel(trip_id)], _encode("location", str(trip_id), body))

    async def session_ended(self, *, user_id: int, sid: str | None = None) -> None:
        """`sid` ended (log-out, a replayed refresh token) or, without one, every
        session of `user_id` (deactivated or deleted)."""
        key = f"session:{sid}" if sid else f"user:{user_id}"
        body = {"user_id": user_id, "sid": sid}
        await self._send([SESSIONS], _encode("session_ended", key, body))
