"""The rush-hour load, driven by ONE scheduler loop: a timer wheel ticking every 20 ms
sends the position reports and requests that are due, and every answer is a callback
on the socket that received it (bench.gqlws). No task or sleep per socket: 10,000
sleeping tasks cost the generator more than the reports themselves."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from bench.gqlws import GqlSocket, failure, template
from bench.net import WS

CENTER = (52.52, 13.40)
HALF_SIDE = 10_000.0  # metres: a 20 x 20 km city
M_PER_DEG = 111_195.0
LON_SCALE = M_PER_DEG * math.cos(math.radians(CENTER[0]))
STEP_DEG = 2e-4  # a report moves the car by up to ~20 m
DRIVER_EVERY, TRIP_EVERY = 4.0, 2.0
TICK = 0.02  # the wheel's resolution: a report is sent at most this late
SLOTS = round(DRIVER_EVERY / TICK)
ACCEPT_AFTER = (1.0, 3.0)
LEG = 3.0  # seconds from accept to IN_PROGRESS and from there to COMPLETED
WINDOW = 30.0
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
BARE_POSITION = b'{"latitude":%.7f,"longitude":%.7f}'


def spot() -> tuple[float, float]:
    dy, dx = (random.uniform(-HALF_SIDE, HALF_SIDE) for _ in range(2))
    return CENTER[0] + dy / M_PER_DEG, CENTER[1] + dx / LON_SCALE


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Stats:
    """Samples per measure and 30 s window, taken only while `measuring`."""

    def __init__(self) -> None:
        self.windows: defaultdict[str, defaultdict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.started = time.monotonic()
        self.measuring = False
        self.reports = 0  # answered while measuring
        self.sent = 0  # sent while measuring (more than answered: the server fell behind)
        self.errors: defaultdict[str, int] = defaultdict(int)

    def start(self) -> None:
        self.measuring, self.started = True, time.monotonic()

    def add(self, name: str, seconds: float) -> None:
        if self.measuring:
            self.windows[name][int((time.monotonic() - self.started) // WINDOW)].append(seconds)

    def error(self, what: str) -> None:
        self.errors[what] += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, windows in self.windows.items():
            values = [v for k in sorted(windows) for v in windows[k]]
            out[name] = {
                "n": len(values),
                "p50_ms": pct(values, 0.5),
                "p99_ms": pct(values, 0.99),
                "max_ms": pct(values, 1.0),
                "p99_ms_per_window": [pct(windows[k], 0.99) for k in sorted(windows)],
            }
        return out


@dataclass(slots=True, eq=False)
class Car:
    """A reporting socket: where it is, and (busy drivers) its trip's open reports."""

    sock: GqlSocket
    lat: float
    lon: float
    trip: str | None = None
    unmatched: dict[float, float] = field(default_factory=dict)  # latitude -> sent at


class Wheel:
    """Who reports in which tick of the 4 s cycle (2 s cars sit in two slots)."""

    def __init__(self) -> None:
        self.slots: list[list[Any]] = [[] for _ in range(SLOTS)]

    def add(self, who: Any, every: float) -> None:
        first = random.randrange(SLOTS)
        step = round(every / TICK)
        for slot in range(first % step, SLOTS, step):
            self.slots[slot].append(who)

    async def turn(self, stop: asyncio.Event, each: Any, then: Any, lag: Stats) -> None:
        """Calls `each(who, now)` for everyone due, then `then(now)`, tick after tick,
        until `stop`; how late each tick starts goes to `lag`."""
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while not stop.is_set():
            now = time.monotonic()
            for who in self.slots[tick % SLOTS]:
                each(who, now)
            then(now)
            tick += 1
            late = loop.time() - (start + tick * TICK)
            lag.add("generator_tick_lag", max(late, 0.0))
            await asyncio.sleep(max(0.0, -late))


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

    async def run(self) -> None:
        await self.wheel.turn(self.stop, self._tick, self._requests, self.stats)

    def _tick(self, car: Car, _tick_at: float) -> None:
        car.lat += random.uniform(-STEP_DEG, STEP_DEG)
        car.lon += random.uniform(-STEP_DEG, STEP_DEG)
        now = time.monotonic()
        if car.trip is not None:
            if len(car.unmatched) > MAX_UNMATCHED:
                car.unmatched.clear()
            car.unmatched[round(car.lat, 7)] = now
        self.stats.sent += self.stats.measuring
        car.sock.op(UPDATE, POSITION % (car.lat, car.lon), (self._reported, now))

    def _reported(self, sent: float, msg: dict[str, Any]) -> None:
        self.stats.add("updatePosition_rtt", time.monotonic() - sent)
        self.stats.reports += self.stats.measuring
        if (code := failure(msg)) is not None:
            self.stats.error(f"updatePosition {code}")

    def on_location(self, car: Car, msg: dict[str, Any]) -> None:
        lat = msg["payload"]["data"]["driverLocation"]["latitude"]
        sent = car.unmatched.pop(round(lat, 7), None)
        if sent is not None:
            self.stats.add("position_to_rider", time.monotonic() - sent)

    # -- requests, offers, the trip after the offer ----------------------------------------

    def start_requests(self, requesters: list[GqlSocket]) -> None:
        self.requesters, self.requested = requesters, 0
        self.requests_from = time.monotonic()

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
            rider.op(REQUEST, where, (self._answered, "requestTrip"))

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

    def _answered(self, what: str, msg: dict[str, Any]) -> None:
        if (code := failure(msg)) is not None:
            self.stats.error(f"{what} {code}")


@dataclass(slots=True, eq=False)
class BareCar:
    ws: WS
    lat: float
    lon: float
    pending: deque[float] = field(default_factory=deque)  # send times, answered in order


class Bare:
    """The same sockets and rates against bench.rush_bare: a position in, `{"ok":true}`
    out, nothing else."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.wheel = Wheel()
        self.cars: list[BareCar] = []
        self.stop = asyncio.Event()

    def car(self, ws: WS, every: float) -> None:
        ws.index = len(self.cars)
        ws.sink = self._answered
        car = BareCar(ws, *spot())
        self.cars.append(car)
        self.wheel.add(car, every)

    async def run(self) -> None:
        await self.wheel.turn(self.stop, self._tick, _nothing, self.stats)

    def _tick(self, car: BareCar, _tick_at: float) -> None:
        car.lat += random.uniform(-STEP_DEG, STEP_DEG)
        car.lon += random.uniform(-STEP_DEG, STEP_DEG)
        car.pending.append(time.monotonic())
        self.stats.sent += self.stats.measuring
        car.ws.send(BARE_POSITION % (car.lat, car.lon))

    def _answered(self, ws: WS, _at: float, _data: bytes) -> None:
        pending = self.cars[ws.index].pending
        if pending:
            self.stats.add("bare_rtt", time.monotonic() - pending.popleft())
            self.stats.reports += self.stats.measuring


def _nothing(_now: float) -> None:
    return None
