"""The rush-hour taxi load on bench.rush_wheel's loop: position reports, the riders'
driverLocation frames, requests, offers, accepts and trip steps. Every answer is a
callback on the socket that received it (bench.gqlws)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bench.gqlws import GqlSocket, failure, template
from bench.rush_wheel import Mover, Stats, Wheel, spot

ACCEPT_AFTER = (1.0, 3.0)
LEG = 3.0  # seconds from accept to IN_PROGRESS and from there to COMPLETED
WAVE_ONE = 5.0  # an offer within this of its request belongs to the first wave
MAX_UNMATCHED = 64  # a busy driver's reports whose rider frame has not come (yet)

UPDATE_QUERY = "mutation U($p: LocationInput!) { updatePosition(position: $p) { availability } }"
UPDATE = template(UPDATE_QUERY)
ONLINE = template("mutation O($p: LocationInput!) { goOnline(position: $p) { availability } }")
OFFERS = template("subscription { tripRequested { id pickUpAddress } }")
FOLLOW = template("subscription F($t: ID!) { driverLocation(tripId: $t) { latitude } }")
REQUEST = template("mutation R($i: RequestTripInput!) { requestTrip(input: $i) { id } }")
ACCEPT = template("mutation A($id: ID!) { acceptTrip(id: $id) { id } }")
STEP = template(
    "mutation S($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { id } }"
)
POSITION = b'{"p":{"latitude":%.7f,"longitude":%.7f}}'


@dataclass(slots=True, eq=False)
class Car(Mover):
    """A reporting driver's socket, and (busy drivers) its trip's open reports."""

    sock: GqlSocket
    trip: str | None = None
    unmatched: dict[float, float] = field(default_factory=dict)  # latitude -> sent at


class Rush:
    """The taxi load: reports, rider frames, requests, offers, accepts, trip steps."""

    def __init__(self, stats: Stats, rate: float) -> None:
        self.stats, self.rate = stats, rate
        self.wheel = Wheel()
        self.claimed: set[str] = set()
        self.requesters: list[GqlSocket] = []
        self.requested = 0
        self.requests_from: float | None = None
        self.stop = asyncio.Event()
        # After the overload phase: (seconds since the load dropped, report round trip).
        self.recovery: list[tuple[float, float]] | None = None
        self.dropped_at = 0.0

    async def run(self) -> None:
        await self.wheel.turn(self.stop, self._tick, self._requests, self.stats)

    def _tick(self, car: Car, _tick_at: float) -> None:
        car.move()
        now = time.monotonic()
        if car.trip is not None:
            if len(car.unmatched) > MAX_UNMATCHED:
                car.unmatched.clear()
            car.unmatched[round(car.lat, 7)] = now
        self.stats.sent += self.stats.measuring
        car.sock.op(UPDATE, POSITION % (car.lat, car.lon), (self._reported, now))

    def _reported(self, sent: float, msg: dict[str, Any]) -> None:
        rtt = time.monotonic() - sent
        self.stats.add("updatePosition_rtt", rtt)
        self.stats.reports += self.stats.measuring
        if (code := failure(msg)) is not None:
            self.stats.error(f"updatePosition {code}")
        if self.recovery is not None and sent >= self.dropped_at:
            self.recovery.append((sent - self.dropped_at, rtt))

    def on_location(self, car: Car, msg: dict[str, Any]) -> None:
        lat = msg["payload"]["data"]["driverLocation"]["latitude"]
        sent = car.unmatched.pop(round(lat, 7), None)
        if sent is not None:
            self.stats.add("position_to_rider", time.monotonic() - sent)

    # -- requests, offers, the trip after the offer ----------------------------------------

    def start_requests(self, requesters: list[GqlSocket]) -> None:
        self.requesters, self.requested = requesters, 0
        self.requests_from = time.monotonic()

    def pace(self, rate: float) -> None:
        """Requests at `rate` from now on, by the riders who have not requested yet."""
        self.start_requests(self.requesters[self.requested :])
        self.rate = rate

    def _requests(self, now: float) -> None:
        if self.requests_from is None:
            return
        due = min(len(self.requesters), int((now - self.requests_from) * self.rate) + 1)
        while self.requested < due:
            rider = self.requesters[self.requested]
            self.requested += 1
            lat, lon = spot()
            # The send time travels in the address: offers may beat the answer.
            where = (
                b'{"i":{"pickUpAddress":"rush %.6f","dropOffAddress":"Hour",'
                b'"pickUp":{"latitude":%.7f,"longitude":%.7f}}}' % (time.monotonic(), lat, lon)
            )
            rider.op(REQUEST, where, (self._requested, time.monotonic()))

    def on_offer(self, sock: GqlSocket, msg: dict[str, Any]) -> None:
        offer = msg["payload"]["data"]["tripRequested"]
        trip, address = offer["id"], offer["pickUpAddress"]
        if not address.startswith("rush "):
            return
        age = time.monotonic() - float(address.split()[1])
        if age < WAVE_ONE:
            self.stats.add("request_to_offer", age)
        if trip not in self.claimed:
            self.claimed.add(trip)
            loop = asyncio.get_running_loop()
            loop.call_later(random.uniform(*ACCEPT_AFTER), self._accept, sock, trip)

    def _accept(self, sock: GqlSocket, trip: str) -> None:
        if not self.stop.is_set():
            sock.op(ACCEPT, b'{"id":"%s"}' % trip.encode(), (self._accepted, (sock, trip)))

    def _accepted(self, job: tuple[GqlSocket, str], msg: dict[str, Any]) -> None:
        if (code := failure(msg)) is not None:
            self.stats.error(f"acceptTrip {code}")
            return
        asyncio.get_running_loop().call_later(LEG, self._step, job, b"IN_PROGRESS")

    def _step(self, job: tuple[GqlSocket, str], status: bytes) -> None:
        if self.stop.is_set():
            return
        sock, trip = job
        variables = b'{"id":"%s","s":"%s"}' % (trip.encode(), status)
        sock.op(STEP, variables, (self._stepped, (job, status)))

    def _stepped(self, done: tuple[tuple[GqlSocket, str], bytes], msg: dict[str, Any]) -> None:
        job, status = done
        if (code := failure(msg)) is not None:
            self.stats.error(f"updateTripStatus {code}")
        elif status == b"IN_PROGRESS":
            asyncio.get_running_loop().call_later(LEG, self._step, job, b"COMPLETED")

    def _requested(self, sent: float, msg: dict[str, Any]) -> None:
        """Accepted, or shed (SERVICE_UNAVAILABLE with retryAfter: PROTOCOL.md "Overload")."""
        rtt = time.monotonic() - sent
        code = failure(msg)
        if code is None:
            self.stats.add("requestTrip_rtt", rtt)
            return
        self.stats.error(f"requestTrip {code}")
        if code == "SERVICE_UNAVAILABLE":
            self.stats.add("shed_rtt", rtt)
            errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
            if "retryAfter" not in (errors[0].get("extensions") or {}):
                self.stats.error("requestTrip shed without retryAfter")
