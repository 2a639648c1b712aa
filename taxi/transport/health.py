"""`/healthz`: whether this process reaches its database and broadcast backend, answered
within DEADLINE whatever the load (PROTOCOL.md "Overload").

A probe that waited its turn behind the work it reports on would call a busy process
dead: the database is pinged over a connection of its own (the requests' pool may be
all checked out), and one probe at a time serves every concurrent `/healthz`. When the
probe has not answered within DEADLINE (a saturated loop, a slow backend), the answer is
the last completed probe's, if it is at most FRESH seconds old; a backend that is down
still fails fast (a refused connection answers at once), and one slower than
PROBE_TIMEOUT is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress

from broadcaster import Broadcast
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse

from taxi.core import broadcast as broadcast_mod
from taxi.core import db as db_mod
from taxi.core.backends import Backends
from taxi.core.config import Settings

DEADLINE = 0.08  # seconds: a probe slower than this is answered from the last one
FRESH = 5.0  # seconds a completed probe may stand in for one under way
PROBE_TIMEOUT = 3  # a backend slower than this is down

Failed = dict[str, str]  # backend -> what its probe raised


class Health:
    def __init__(self, engine: AsyncEngine, broadcast: Broadcast) -> None:
        self.engine = engine
        self.broadcast = broadcast
        self._probe: asyncio.Task[Failed] | None = None
        self._last: tuple[float, Failed] | None = None  # (monotonic time, result)

    async def _check(self, failed: Failed, name: str, probe: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is "down"
            failed[name] = type(exc).__name__

    async def _run(self) -> Failed:
        failed: Failed = {}
        await asyncio.gather(
            self._check(failed, "database", db_mod.ping(self.engine)),
            self._check(failed, "broadcast", broadcast_mod.ping(self.broadcast)),
        )
        self._last = (time.monotonic(), failed)
        return failed

    async def failed(self) -> Failed:
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.create_task(self._run(), name="taxi-healthz")
        # Shielded: a client that hangs up must not cancel the probe others wait for.
        try:
            return await asyncio.wait_for(asyncio.shield(probe), DEADLINE)
        except TimeoutError:
            last = self._last
            if last is not None and time.monotonic() - last[0] <= FRESH:
                return last[1]
            return await asyncio.shield(probe)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with suppress(asyncio.CancelledError):
                await self._probe
        await self.engine.dispose()


@asynccontextmanager
async def checking(settings: Settings, broadcast: Broadcast) -> AsyncIterator[Health]:
    """For the app's lifespan: the probe's own one-connection database pool."""
    health = Health(db_mod.create_engine(settings, pool_size=1, max_overflow=0), broadcast)
    try:
        yield health
    finally:
        await health.close()


async def healthz(request: Request) -> JSONResponse:
    health: Health = request.app.state.health
    failed = await health.failed()
    # The kinds only (no addresses): an unauthenticated probe learns what, not where.
    backends: Backends = request.app.state.backends
    running = {"database": backends.database, "broadcast": backends.broadcast}
    if failed:
        body = {"status": "unavailable", "failed": failed, "backends": running}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "backends": running})
