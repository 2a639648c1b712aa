"""How long this process's queued work would take to drain (PROTOCOL.md "Overload").

One process, one event loop, one measure, kept cheap enough to consult per operation:

- `pending`: HTTP requests and socket operations admitted and not yet answered (counted by
  taxi.core.metrics.HttpMetricsMiddleware and taxi.transport.live.operations);
- `cost`: recent CPU seconds per answered operation (the process's CPU time over the
  operations answered meanwhile, sampled every SAMPLE seconds, smoothed);
- `lag`: how late the sampler woke up, i.e. how long ready work already waits for the
  loop (it also sees CPU spent outside operations: fan-out, collections).

The drain time is `max(lag, pending * cost)`. Past OVERLOAD_QUEUE_SECONDS new work is
turned away (taxi.domain.admission); work already admitted always runs."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from taxi.core.tasks import background

SAMPLE = 0.1  # seconds between two samples
SMOOTHING = 0.3  # weight of the newest sample in `cost`
DEFAULT_LIMIT = 2.0  # OVERLOAD_QUEUE_SECONDS


class Load:
    """This process's load; module-level (`LOAD`): every app of a process shares its loop."""

    __slots__ = ("_cpu", "_done_at", "_due", "cost", "done", "lag", "limit", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.done = 0
        self.cost = 0.0
        self.lag = 0.0
        self.limit = DEFAULT_LIMIT
        self._due: float | None = None  # when the sampler should wake next (loop time)
        self._cpu = time.process_time()
        self._done_at = 0

    def started(self) -> None:
        self.pending += 1

    def finished(self) -> None:
        self.pending -= 1
        self.done += 1

    def drain_seconds(self) -> float:
        lag = self.lag
        if self._due is not None:
            # A loop so busy that the sampler itself is late: that lateness counts now.
            lag = max(lag, asyncio.get_running_loop().time() - self._due)
        return max(lag, self.pending * self.cost)

    def retry_after(self) -> int | None:
        """None while new work is welcome; else whole seconds to wait before retrying."""
        seconds = self.drain_seconds()
        if seconds <= self.limit:
            return None
        return max(1, math.ceil(seconds))

    def _sample(self, late: float) -> None:
        cpu, done = time.process_time(), self.done
        used, answered = cpu - self._cpu, done - self._done_at
        self._cpu, self._done_at = cpu, done
        # Nothing answered while the CPU was busy: each pending operation costs at least
        # that much (max(answered, 1)); an idle process's cost decays towards zero.
        latest = used / max(answered, 1)
        self.cost += SMOOTHING * (latest - self.cost)
        self.lag = max(0.0, late)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._due = loop.time() + SAMPLE
                await asyncio.sleep(SAMPLE)
                self._sample(loop.time() - self._due)
        finally:
            self._due = None


LOAD = Load()
_users = 0


@asynccontextmanager
async def measuring(*, limit: float) -> AsyncIterator[Load]:
    """For the app's lifespan: the sampler runs while any app of this process runs."""
    global _users
    LOAD.limit = limit
    _users += 1
    try:
        if _users > 1:
            yield LOAD
            return
        async with background(LOAD.run(), name="taxi-overload-sampler"):
            yield LOAD
    finally:
        _users -= 1
