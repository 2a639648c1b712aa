"""Issue 19, the edge findings, each reproduced as the attack and refused (PROTOCOL.md:
Abuse limits, Subscriptions): a socket that changes hands (#1), over-long operation ids
(#5), subscriptions completed while they are set up (#8)."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import httpx
import pytest

from tests.helpers import LOG_OUT, TRIP_UPDATED, TRIPS_UPDATED, account, gql, request_trip
from tests.live import LiveServer
from tests.wait import eventually
from tests.ws import LEGACY, PROTOCOLS, TRANSPORT, session


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_second_connection_init_never_changes_hands(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    """#1: A's socket, then B's token in a second connection_init: closed (4429), so
    A's subscriptions cannot outlive A's log-out under B's name."""
    a, b = await account(http), await account(http)
    async with session(server.ws_url, a.access, protocol) as ws:
        await ws.subscribe("mine", TRIPS_UPDATED)
        await ws.init({"authToken": b.access})
        assert await ws.closed(4429) == "Too many initialisation requests"
    assert (await gql(http, LOG_OUT, {"r": a.refresh}))["data"]["logOut"] is True
    # Nothing of A's is left registered on this process.
    assert server.app.state.services.sockets.count(int(a.id)) == 0
    assert server.app.state.services.sockets.count(int(b.id)) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_operation_ids_longer_than_128_characters_close_4400(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    """#5: both dialects close on a 129-character id; 128 is served."""
    rider = await account(http)
    trip = await request_trip(http, rider)
    async with session(server.ws_url, rider.access, protocol) as ws:
        longest = "x" * 128
        await ws.subscribe(longest, TRIP_UPDATED, {"id": trip["id"]})
        assert (await ws.next(longest))["tripUpdated"]["id"] == trip["id"]
        await ws.subscribe("y" * 129, TRIP_UPDATED, {"id": trip["id"]})
        assert await ws.closed(4400) == "Operation id longer than 128 characters"
    async with session(server.ws_url, rider.access, protocol) as ws:
        # A stop with such an id too (legacy clients never get to store one).
        kind = "stop" if protocol == LEGACY else "complete"
        await ws.send({"id": "z" * 60_000, "type": kind})
        await ws.closed(4400)


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_complete_racing_a_subscribe_leaks_no_channel_or_task(
    server: LiveServer,
    http: httpx.AsyncClient,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """#8: `tripUpdated` then its stop 0–8 ms later, many times: afterwards the hub
    holds no channel and no pump, and no task was destroyed while pending."""
    rider = await account(http)
    trip = await request_trip(http, rider)
    hub = server.hub
    channels_before, pumps_before = set(hub._channels), len(_pumps())
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with session(server.ws_url, rider.access, protocol, interleaved=True) as ws:
        stop = "stop" if ws.legacy else "complete"
        for i in range(200):
            op = f"r{i}"
            await ws.subscribe(op, TRIP_UPDATED, {"id": trip["id"]})
            if delay := (i % 41) / 5000:
                await asyncio.sleep(delay)  # the race's 0–8 ms (0.2 ms steps), not a wait
            await ws.send({"id": op, "type": stop})

        async def settled() -> tuple[set[str], int, int]:
            return set(hub._channels) - channels_before, len(hub._stopping), len(_pumps())

        await eventually(
            settled, lambda got: got == (set(), 0, pumps_before), what="hub back to empty"
        )
    gc.collect()
    await asyncio.sleep(0)  # let the loop run callbacks queued by the collection
    assert "Task was destroyed" not in caplog.text
    assert "KeyError" not in caplog.text


def _pumps() -> list[Any]:
    """The hub's channel pumps still running in this loop (the server's too)."""
    return [t for t in asyncio.all_tasks() if "Hub._pump" in repr(t.get_coro())]
