"""The rush hour's baseline load: the same sockets and rates against bench.rush_bare (a
position in, `{"ok":true}` out), on the same wheel."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from bench.net import WS
from bench.rush_wheel import Mover, Stats, Wheel

BARE_POSITION = b'{"latitude":%.7f,"longitude":%.7f}'


@dataclass(slots=True, eq=False)
class BareCar(Mover):
    ws: WS
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
        car = BareCar.anywhere(ws)
        self.cars.append(car)
        self.wheel.add(car, every)

    async def run(self) -> None:
        await self.wheel.turn(self.stop, self._tick, _nothing, self.stats)

    def _tick(self, car: BareCar, _tick_at: float) -> None:
        car.move()
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
