"""How long this process's queued work would take to drain (PROTOCOL.md "Overload").

One process, one event loop, one measure, kept cheap enough to consult per operation:

- `pending`: HTTP requests and socket operations admitted and not yet answered (counted by
  taxi.core.metrics.HttpMetricsMiddleware and taxi.transport.live.operations);
- `cost`: recent CPU seconds per answered operation: the process's CPU time over the
  operations answered meanwhile, taken over at least a second or MIN_ANSWERED answers (one
  pause must not read as a costly operation), smoothed;
- `lag`: how late the sampler woke up, the least of its last LAG_SAMPLES wake-ups: how
  long ready work waits for the loop when that wait persists (a standing queue, as
  CoDel reads it), not one collection's or one long callback's pause. It also sees CPU
  spent outside operations (fan-out, collections).

The drain time is `max(lag, pending * cost)`. Past OVERLOAD_QUEUE_SECONDS new work is
turned away (taxi.domain.admission); work already admitted always runs."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from taxi.core.tasks import background

SAMPLE = 0.1  # seconds between two samples
LAG_SAMPLES = 10  # `lag` is the least lateness of this many samples (a second, idle)
COST_SECONDS = 1.0  # `cost` is taken over at least this long ...
MIN_ANSWERED = 20  # ... or this many answered operations
# Weight of the newest `cost` in the smoothed one. A mean of ratios, not a ratio of sums:
# tried (git 3a5ec4c), the sums read a saturated process's cost lower (tenths of a second
# with few answers, a batch's send under way, no longer weigh as much); in one pair of
# 40 s phases at twice the load it shed fewer requestTrip (241 against 333) and the
# reports' p99 there went from 1.9 to 3.7 s. Its flaw stays: right after a costly second
# (thousands of sockets connecting), a burst of cheap reports reads as saturated for
# about a second.
SMOOTHING = 0.3
DEFAULT_LIMIT = 2.0  # OVERLOAD_QUEUE_SECONDS


class Load:
    """This process's load; module-level (`LOAD`): every app of a process shares its loop."""

    __slots__ = (
        "_clock",
        "_cpu",
        "_cpu_time",
        "_done_at",
        "_late",
        "_since",
        "cost",
        "done",
        "limit",
        "pending",
    )

    def __init__(
        self,
        *,
        cpu_time: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu_time, self._clock = cpu_time, clock
        self.reset()

    def reset(self) -> None:
        self.pending = 0
        self.done = 0
        self.cost = 0.0
        self.limit = DEFAULT_LIMIT
        self._late: deque[float] = deque([0.0], maxlen=LAG_SAMPLES)
        self._cpu, self._since, self._done_at = self._cpu_time(), self._clock(), 0

    @property
    def lag(self) -> float:
        return min(self._late)

    def started(self) -> None:
        self.pending += 1

    def finished(self) -> None:
        self.pending -= 1
        self.done += 1

    def drain_seconds(self) -> float:
        return max(self.lag, self.pending * self.cost)

    def retry_after(self) -> int | None:
        """None while new work is welcome; else whole seconds to wait before retrying."""
        seconds = self.drain_seconds()
        if seconds <= self.limit:
            return None
        return max(1, math.ceil(seconds))

    def sample(self, late: float) -> None:
        """One sampler wake-up, `late` seconds after it was due."""
        self._late.append(max(0.0, late))
        now, answered = self._clock(), self.done - self._done_at
        if answered < MIN_ANSWERED and now - self._since < COST_SECONDS:
            return
        cpu = self._cpu_time()
        # Nothing answered while the CPU was busy: each pending operation costs at least
        # that much (max(answered, 1)); an idle process's cost decays towards zero.
        latest = (cpu - self._cpu) / max(answered, 1)
        self.cost += SMOOTHING * (latest - self.cost)
        self._cpu, self._since, self._done_at = cpu, now, self.done

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + SAMPLE
            await asyncio.sleep(SAMPLE)
            self.sample(loop.time() - due)


LOAD = Load()
_users = 0


@asynccontextmanager
async def measuring(*, limit: float) -> AsyncIterator[Load]:
    """For the app's lifespan: the sampler runs while any app of this process runs."""
    global _users
    if _users == 0:
        # A fresh start: what an earlier loop left (tests run many apps in one process, and
        # a closed loop never runs its tasks' `finally`) is not this one's work.
        LOAD.reset()
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
