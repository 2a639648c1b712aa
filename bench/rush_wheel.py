"""The rush-hour generator's clock and tally: ONE scheduler loop (a timer wheel ticking
every 20 ms calls whoever is due; no task or sleep per socket: 10,000 sleeping tasks cost
the generator more than the reports themselves), the city's coordinates, and the
samples per 30 s window."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Self

CENTER = (52.52, 13.40)
HALF_SIDE = 10_000.0  # metres: a 20 x 20 km city
M_PER_DEG = 111_195.0
LON_SCALE = M_PER_DEG * math.cos(math.radians(CENTER[0]))
STEP_DEG = 2e-4  # a report moves the car by up to ~20 m
DRIVER_EVERY, TRIP_EVERY = 4.0, 2.0
TICK = 0.02  # the wheel's resolution: a report is sent at most this late
SLOTS = round(DRIVER_EVERY / TICK)
WINDOW = 30.0


def spot() -> tuple[float, float]:
    dy, dx = (random.uniform(-HALF_SIDE, HALF_SIDE) for _ in range(2))
    return CENTER[0] + dy / M_PER_DEG, CENTER[1] + dx / LON_SCALE


@dataclass(slots=True, eq=False)
class Mover:
    """Where a reporting car is, somewhere in the city; each report moves it."""

    lat: float
    lon: float

    @classmethod
    def anywhere(cls, *args: Any) -> Self:
        """One at a random spot; `args` are the subclass's further fields."""
        return cls(*spot(), *args)

    def move(self) -> None:
        self.lat += random.uniform(-STEP_DEG, STEP_DEG)
        self.lon += random.uniform(-STEP_DEG, STEP_DEG)


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
        self.seconds: defaultdict[str, defaultdict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.started = time.monotonic()
        self.measuring = False
        self.reports = 0  # answered while measuring
        self.sent = 0  # sent while measuring (more than answered: the server fell behind)
        self.errors: defaultdict[str, int] = defaultdict(int)  # while measuring
        # Before the window (the warm-up: every driver's first report at once after the
        # setup) and after it: reported apart, never mixed into the window's.
        self.errors_outside: defaultdict[str, int] = defaultdict(int)

    def start(self) -> None:
        self.measuring, self.started = True, time.monotonic()

    def add(self, name: str, seconds: float) -> None:
        if self.measuring:
            elapsed = time.monotonic() - self.started
            self.windows[name][int(elapsed // WINDOW)].append(seconds)
            self.seconds[name][int(elapsed)].append(seconds)

    def per_second(self, name: str) -> list[tuple[int, int, float | None]]:
        """(second, samples, p99 ms) of one measure by when each sample arrived: to line
        a slow stretch up with what the server and the machine did then."""
        return [(s, len(v), pct(v, 0.99)) for s, v in sorted(self.seconds[name].items())]

    def error(self, what: str) -> None:
        (self.errors if self.measuring else self.errors_outside)[what] += 1

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


class Wheel:
    """Who reports in which tick of the 4 s cycle (2 s cars sit in two slots). `doubled`:
    everyone also reports half-way between their own ticks (the overload phase: twice
    the load from the same sockets)."""

    def __init__(self) -> None:
        self.slots: list[list[Any]] = [[] for _ in range(SLOTS)]
        self.halfway: list[list[Any]] = [[] for _ in range(SLOTS)]
        self.doubled = False

    def add(self, who: Any, every: float) -> None:
        first = random.randrange(SLOTS)
        step = round(every / TICK)
        for slot in range(first % step, SLOTS, step):
            self.slots[slot].append(who)
            self.halfway[(slot + step // 2) % SLOTS].append(who)

    async def turn(self, stop: asyncio.Event, each: Any, then: Any, lag: Stats) -> None:
        """Calls `each(who, now)` for everyone due, then `then(now)`, tick after tick,
        until `stop`; how late each tick starts goes to `lag`."""
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while not stop.is_set():
            now = time.monotonic()
            for who in self.slots[tick % SLOTS]:
                each(who, now)
            if self.doubled:
                for who in self.halfway[tick % SLOTS]:
                    each(who, now)
            then(now)
            tick += 1
            late = loop.time() - (start + tick * TICK)
            lag.add("generator_tick_lag", max(late, 0.0))
            await asyncio.sleep(max(0.0, -late))
