"""Position reports handled in batches (a few milliseconds' worth): newest wins per
driver, one store call and one publish round trip for all of them.

A city's drivers report every few seconds each; at rush hour thousands of reports
arrive a second. They wait here for WINDOW, then go to the position
store in one call (one Redis script, one round trip) and the locations of the cars
driving trips go to their riders in one more (one pipeline). Under overload a driver's
reports pile up: a report still waiting when a newer one from the same driver arrives
is answered with the newer one's result and never processed on its own (PROTOCOL.md
"Overload"), so a backlog costs one store write per driver, not one per report."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from taxi.core import metrics
from taxi.core.cluster import REDIS_ERRORS
from taxi.domain.events import Located, Publisher
from taxi.domain.positions import Availability, DriverStatus, Fix, PositionStore, Report

log = logging.getLogger(__name__)

# Reports sent in one store call at most (one script argument, a line each, ~60 bytes);
# more wait for the next call, in the same flush. One call per loop pass is what a
# saturated process makes: at 500 a call, twice the rush-hour load (5,900 reports/s)
# outran the flusher and reports waited 2.8 s (p99) in `_waiting`; at 4,000, 0.6 s.
# Each call's reply is parsed (and the riders' locations built) without the loop turning
# in between: at 4,000 that held the loop up to 80 ms at twice the load (a shed request's
# answer waited that long); at 2,000, 53 ms, the flusher's throughput the same.
MAX_BATCH = 2000
# How long the first report of a batch waits for others. One loop pass alone gathered
# 1-3 reports at 2,750 reports/s (the loop turns fast while it keeps up), so most of
# the Redis client's cost was paid per report; a few milliseconds gather ten times
# as many, well within a report's 50 ms (5 ms: ~5 % less CPU per report than 2 ms at
# rush hour, two runs each, for ~3 ms more round trip; 10 ms: 4-6 % less than 5 ms in
# three of four interleaved pairs of 30 s runs, 22 % in the fourth, the reports' p99
# 20-35 ms either way). Each batch costs a script call, a publish and a few task
# switches whatever its size: at rush hour ~28 reports share them instead of ~14.
WINDOW = 0.010
# How long the answers of a batch hold the loop at a time. A saturated process's batches
# hold thousands of reports, and telling them all in one go (a write each) held it for
# ~200 ms: a shed request's answer and each statement of a lifecycle step waited that
# long for their turn. Between slices the loop reads its sockets.
SLICE = 0.005

Outcome = tuple[DriverStatus, Fix]  # the driver's state and the position recorded
# Told once, when the batch is through: the outcome, or what failed it (an Exception; any
# other BaseException: the flusher itself was stopped, at shutdown).
Done = Callable[[Outcome | None, BaseException | None], None]


@dataclass(slots=True)
class _Waiting:
    fix: Fix
    online: bool
    # One per report waiting for this driver's outcome (a caller that went away ignores
    # its own).
    callers: list[Done]
    superseded: int = 0  # older reports folded into this one


class Reports:
    """One per process (Services.reports), in front of the position store."""

    def __init__(self, *, positions: PositionStore, events: Publisher) -> None:
        self.positions = positions
        self.events = events
        self._waiting: dict[int, _Waiting] = {}  # by driver, in arrival order
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, *, driver_id: int, fix: Fix, online: bool, done: Done) -> None:
        """Records `fix` (or a newer one of the same driver, whose outcome this is then);
        `done` hears of it from the batch. No task or future per report: the socket layer
        answers a report from here (taxi/transport/live/operations.py)."""
        waiting = self._waiting.get(driver_id)
        if waiting is None:
            self._waiting[driver_id] = _Waiting(fix, online, [done])
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
        else:
            # Newest wins; a goOnline among them still turns the driver AVAILABLE.
            waiting.fix = fix
            waiting.online = waiting.online or online
            waiting.superseded += 1
            waiting.callers.append(done)

    async def report(self, *, driver_id: int, fix: Fix, online: bool) -> Outcome:
        """`submit`, awaited."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome | None, error: BaseException | None) -> None:
            if future.done():  # its caller went away
                return
            if outcome is not None:
                future.set_result(outcome)
            elif isinstance(error, Exception):
                future.set_exception(error)
            else:
                future.cancel()

        self.submit(driver_id=driver_id, fix=fix, online=online, done=done)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(WINDOW)  # let the reports of the next few loop passes join
        while self._waiting:
            drivers = list(islice(self._waiting, MAX_BATCH))
            batch = [(driver, self._waiting.pop(driver)) for driver in drivers]
            try:
                states = await self._send(batch)
            except BaseException as exc:
                # Every caller of the batch hears of it (none may hang); a Redis outage
                # ends only this batch, anything else (a bug, shutdown) the flusher too.
                for _, waiting in batch:
                    _tell(waiting.callers, None, exc)
                if not isinstance(exc, REDIS_ERRORS):
                    raise
                continue
            await _answer(batch, states)

    async def _send(self, batch: list[tuple[int, _Waiting]]) -> list[DriverStatus]:
        reports = [Report(driver, w.fix, w.online) for driver, w in batch]
        states = await self.positions.report_many(reports)
        # The reply was parsed in one go; the loop turns before the locations are built.
        await asyncio.sleep(0)
        # Each frame carries the ETA to the trip's next stop, known from the store's state.
        located = [
            Located(
                state.trip_id,
                self.positions.estimator.located(location=w.fix.view(), stop=state.target),
                (state.rider_id, driver),
            )
            for (driver, w), state in zip(batch, states, strict=True)
            if state.trip_id is not None
        ]
        # The riders' cars move before their drivers hear back (as one report did).
        await self.events.locations_reported(located)
        stored = sum(1 for state in states if state.availability is not Availability.OFFLINE)
        metrics.positions(stored=stored, coalesced=sum(w.superseded for _, w in batch))
        return states


async def _answer(batch: list[tuple[int, _Waiting]], states: list[DriverStatus]) -> None:
    """Each report of the batch told its outcome, the loop turning every SLICE seconds;
    stopped meanwhile (shutdown), the rest hear of that (none may hang)."""
    told = 0
    try:
        since = time.perf_counter()
        for (_, waiting), state in zip(batch, states, strict=True):
            _tell(waiting.callers, (state, waiting.fix), None)
            told += 1
            if time.perf_counter() - since > SLICE:
                await asyncio.sleep(0)
                since = time.perf_counter()
    except BaseException as exc:
        for _, waiting in batch[told:]:
            _tell(waiting.callers, None, exc)
        raise


def _tell(callers: list[Done], outcome: Outcome | None, error: BaseException | None) -> None:
    for done in callers:
        try:
            done(outcome, error)
        except Exception:
            # As the event loop treats a failing callback: logged, and the batch's other
            # callers still hear of theirs.
            log.exception("a position report's caller failed on its outcome")
