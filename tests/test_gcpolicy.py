"""taxi.core.gcpolicy (GC_TUNING, on under `taxi serve`): full collections skip what survived
the last one, connections closed meanwhile are still freed (a closed socket leaves no
reference cycle), and a heap growing with live sockets is not walked whole. Each scenario runs in a
fresh interpreter: the policy changes the collector of the whole process."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from graphql import Executor
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from taxi.core.config import Settings
from taxi.transport.server import HTTP, WebSocketProtocol
from tests.backends import Backend, trip_locked
from tests.helpers import (
    CANCEL_TRIP,
    DRIVER_LOCATION,
    LOG_OUT,
    TRIP_REQUESTED,
    TRIP_UPDATED,
    Account,
    account,
    gql,
    request_trip,
)
from tests.live import LiveServer, serve
from tests.wait import eventually
from tests.ws import WsClient, session

REPO = Path(__file__).resolve().parents[1]
PER_ROUND = 2000  # connections opened, then closed, per round
ROUNDS = 40

CHURN = f"""
import asyncio, gc, sys, weakref
import orjson
from taxi.core import gcpolicy
class Conn:
    # What a closed connection leaves: a reference cycle (uvicorn's protocol and its
    # transport), freed only by a collection that walks it.
    def __init__(self):
        self.me = [self]
        self.buffers = [{{"n": i}} for i in range(20)]

async def churn(in_loop):
    gcpolicy.install()
    alive = weakref.WeakSet()
    walked = []
    for _ in range({ROUNDS}):
        conns = [Conn() for _ in range({PER_ROUND})]
        for _ in conns:
            gcpolicy.opened()  # as the transport says of an open socket
        alive.update(conns)
        gc.collect()  # a full collection while they are open
        if in_loop:
            await asyncio.sleep(0)  # what the policy asked the loop to run
        walked.append(sum(len(gc.get_objects(g)) for g in range(3)))
        for _ in conns:
            gcpolicy.closed(24)  # as the transport says of a closed socket
        del conns  # closed: garbage in cycles
    gc.collect()
    await asyncio.sleep(0)
    return {{"alive": len(alive), "walked": walked, "walks": gcpolicy.walks()}}

in_loop = sys.argv[1] == "loop"
print(orjson.dumps(asyncio.run(churn(in_loop))).decode())
"""


GROWING = f"""
import asyncio, gc, sys
import orjson
from taxi.core import gcpolicy
class Conn:
    def __init__(self):
        self.me = [self]
        self.buffers = [{{"n": i}} for i in range(20)]

async def grow(sockets):
    gcpolicy.install()
    open_ = []
    for _ in range({ROUNDS}):
        for _ in range({PER_ROUND}):
            open_.append(Conn())  # opened, never closed
            if sockets:
                gcpolicy.opened()  # as the transport says of an open socket
        gc.collect()
        await asyncio.sleep(0)
    grown = {{
        "walks": gcpolicy.walks(),
        "open": len(open_),
        "sockets": gcpolicy.sockets(),
        "threshold": gc.get_threshold(),
    }}
    # Then a tenth of them close (drivers reconnecting), a round at a time.
    for _ in range({ROUNDS} // 10):
        del open_[-{PER_ROUND}:]
        for _ in range({PER_ROUND}):
            gcpolicy.closed(24)
        gc.collect()
        await asyncio.sleep(0)
    grown["walks_after_closes"] = gcpolicy.walks() - grown["walks"]
    return grown

print(orjson.dumps(asyncio.run(grow(sys.argv[1] == "sockets"))).decode())
"""


def _run(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = orjson.loads(out.stdout)
    return result


@pytest.fixture(scope="module", params=["plain", "loop"])
def churn(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The churn without an event loop, and inside one (as in the server)."""
    result = _run(CHURN, request.param)
    result["mode"] = request.param
    return result


def test_closed_connections_are_freed_although_survivors_are_frozen(
    churn: dict[str, Any],
) -> None:
    result = churn
    # 80,000 connections were opened and closed, each frozen while open: without the
    # thaw they would all still be alive. What was released may reach a quarter of the
    # heap between two walks of all of it, so no more than a round or two of garbage is
    # ever kept.
    assert result["alive"] <= 2 * PER_ROUND, result["alive"]
    assert result["walks"] >= ROUNDS // 4, result


def test_a_heap_growing_with_open_sockets_is_never_walked_whole() -> None:
    """Nothing released, the heap grows 40-fold with the sockets that opened (a city's
    morning; each walk of all of it is a pause of a second at 10,000 sockets): no walk.
    At every doubling there were three, 0.3 to 1.1 s, while the bench's sockets opened."""
    result = _run(GROWING, "sockets")
    assert result["open"] == result["sockets"] == ROUNDS * PER_ROUND, result
    assert result["walks"] == 0, result
    # A tenth of them closing leaves garbage far below a quarter of the heap: no walk.
    # (Measured against the heap at the last walk, the start-up's, it called for one.)
    assert result["walks_after_closes"] == 0, result
    # Full collections often, so each one is short (what promoted objects it walks).
    assert tuple(result["threshold"]) == (700, 10, 1), result


def test_a_heap_growing_without_sockets_is_walked_when_it_doubled() -> None:
    """The backstop for garbage nobody reported: the same growth with no socket opened
    is walked each time the heap doubled (a walk per quarter of growth would be ~16)."""
    result = _run(GROWING, "plain")
    assert result["open"] == ROUNDS * PER_ROUND and result["sockets"] == 0, result
    assert 1 <= result["walks"] <= 6, result


def test_a_full_collection_leaves_nothing_to_walk_next_time(churn: dict[str, Any]) -> None:
    walked = churn["walked"]
    if churn["mode"] == "loop":
        # In the event loop the whole-heap walk a thaw calls for runs at once: after
        # every round everything alive is frozen again.
        assert all(n < PER_ROUND for n in walked), walked
        return
    # After most full collections everything alive is frozen: the next one walks only
    # what is new. (After a thaw, one collection walks everything.)
    frozen = [n for n in walked if n < PER_ROUND]
    assert len(frozen) >= len(walked) // 2, walked


GO_ONLINE = """mutation On($p: LocationInput!) {
  goOnline(position: $p) { availability } }"""


async def test_a_closed_socket_is_freed_without_the_collector(server: LiveServer) -> None:
    """What a socket held (uvicorn's protocol and what the app hung on it) is freed by
    reference counting once it closes, whoever closed it: with the collector off the
    protocols die. The seams' references back to the app (the listener, the protocol
    in its own scope) made cycles: ~80 objects a closed socket left for a walk of the
    whole heap (what `gcpolicy.SOCKET` weighs)."""
    async with server.http() as client:
        rider, driver = await account(client), await account(client, "DRIVER")
        trip = await request_trip(client, rider)
        async with AsyncExitStack() as stack:
            drives = await stack.enter_async_context(session(server.ws_url, driver.access))
            await drives.subscribe("offers", TRIP_REQUESTED)
            await drives.subscribe("on", GO_ONLINE, {"p": {"latitude": 52.5, "longitude": 13.4}})
            assert (await drives.next("on"))["goOnline"]["availability"] == "AVAILABLE"
            rides = await stack.enter_async_context(
                session(server.ws_url, rider.access, interleaved=True)
            )
            await rides.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
            await rides.subscribe("car", DRIVER_LOCATION, {"tripId": trip["id"]})
            assert (await rides.next("trip"))["tripUpdated"]["status"] == "REQUESTED"
            async with _freed_by_refcounts(server, sockets=2):
                # The server closes the rider's (4403: signed out), the driver closes theirs.
                await _sign_out(client, rider, rides)
                await stack.aclose()


async def test_an_operation_cut_off_by_its_socket_closing_leaves_no_cycle(
    server: LiveServer, real_backend: Backend
) -> None:
    """A cancelTrip waiting for a row lock when its socket closes (signed out) is
    cancelled inside SQLAlchemy, whose error handler keeps the exception in its frame:
    the exception's traceback ran through the operation's frames to the socket's
    objects, all in one cycle. Dropped with the traceback, the protocol is freed
    without the collector."""
    async with server.http() as client:
        rider = await account(client)
        trip = await request_trip(client, rider)
        async with AsyncExitStack() as stack:
            lock = await stack.enter_async_context(trip_locked(real_backend, trip["id"]))
            ws = await stack.enter_async_context(session(server.ws_url, rider.access))
            await ws.subscribe("cancel", CANCEL_TRIP, {"id": trip["id"]})
            await eventually(lock.waiting, lambda n: n >= 1, what="the cancel waiting")
            async with _freed_by_refcounts(server, sockets=1):
                await _sign_out(client, rider, ws)
                await lock.release()


async def test_executions_and_upgrades_leave_no_cycle(settings: Settings) -> None:
    """An operation's execution (a mutation over HTTP and over a socket, a subscription
    opened and fed) and a connection upgraded to a WebSocket are freed by reference
    counting: with the collector off, no executor and no spent HTTP protocol is left.
    Each was a reference cycle (graphql-core's executor hands resolvers its own bound
    methods; httptools' parser, the protocol's), frozen garbage when a full collection
    found it alive (taxi.api.graphql_adapter, taxi.transport.server)."""
    async with serve(settings, http=HTTP) as live, live.http() as client:
        rider = await account(client)
        gc.collect()
        gc.disable()
        try:
            trip = await request_trip(client, rider)
            async with session(live.ws_url, rider.access, interleaved=True) as ws:
                await ws.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
                assert (await ws.next("trip"))["tripUpdated"]["status"] == "REQUESTED"
                await ws.subscribe("cancel", CANCEL_TRIP, {"id": trip["id"]})
                assert (await ws.next("cancel"))["cancelTrip"]["status"] == "CANCELED"
                assert (await ws.next("trip"))["tripUpdated"]["status"] == "CANCELED"
                open_now = set(live.server.server_state.connections)
                left = [
                    type(o).__name__
                    for o in gc.get_objects()
                    if isinstance(o, (Executor, HttpToolsProtocol)) and o not in open_now
                ]
            assert left == []
        finally:
            gc.enable()


@asynccontextmanager
async def _freed_by_refcounts(server: LiveServer, *, sockets: int) -> AsyncIterator[None]:
    """The server's `sockets` open WebSockets, closed in the block, are freed with the
    collector off: only reference counting frees anything meanwhile."""
    connections = server.server.server_state.connections
    protocols = [weakref.ref(c) for c in connections if isinstance(c, WebSocketProtocol)]
    assert len(protocols) == sockets
    gc.disable()
    try:
        yield

        async def alive() -> int:
            return sum(1 for ref in protocols if ref() is not None)

        await eventually(alive, lambda n: n == 0, what="the protocols freed")
    finally:
        gc.enable()


async def _sign_out(client: httpx.AsyncClient, user: Account, ws: WsClient) -> None:
    """`user` logs out; the server closes their socket with 4403."""
    await gql(client, LOG_OUT, {"r": user.refresh}, token=user.access)
    await ws.closed(4403)
