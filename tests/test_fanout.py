"""Shared execution: one event is executed once per (document, variables) and process,
however many subscribers watch it, and each subscriber still gets exactly its selection."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from taxi.api.strategies.live import LiveQuery
from taxi.transport.live.operations import Operations
from tests.helpers import ACCEPT_TRIP, account, gql, request_trip
from tests.live import LiveServer
from tests.ws import session

FULL = "subscription W($id: ID!) { tripUpdated(id: $id) { id status driver { username } } }"
SLIM = "subscription S($id: ID!) { tripUpdated(id: $id) { status } }"


async def test_one_execution_per_document_per_event(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rider, driver = await account(http), await account(http, "DRIVER")
    trip = await request_trip(http, rider)
    counts = {"executed": 0, "framed": 0}
    payload, deliver = LiveQuery.payload, Operations.deliver

    def count_executions(self: Any, *args: Any, **kwargs: Any) -> bytes:
        counts["executed"] += 1
        return payload(self, *args, **kwargs)

    def count_frames(self: Any, *args: Any) -> None:
        counts["framed"] += 1
        deliver(self, *args)

    monkeypatch.setattr(LiveQuery, "payload", count_executions)
    monkeypatch.setattr(Operations, "deliver", count_frames)

    async with AsyncExitStack() as stack:
        watchers = []
        for document in [FULL] * 5 + [SLIM] * 2:
            ws = await stack.enter_async_context(session(server.ws_url, rider.access))
            await ws.subscribe("t", document, {"id": trip["id"]})
            first = await ws.next("t")
            assert first["tripUpdated"]["status"] == "REQUESTED"
            watchers.append((document, ws))
        # Each first state was read from the database per subscriber: not shared.
        counts.update(executed=0, framed=0)

        accepted = await gql(http, ACCEPT_TRIP, {"id": trip["id"]}, token=driver.access)
        assert "errors" not in accepted
        for document, ws in watchers:
            data = (await ws.next("t"))["tripUpdated"]
            if document == FULL:
                assert data == {
                    "id": trip["id"],
                    "status": "STARTED",
                    "driver": {"username": driver.username},
                }
            else:
                assert data == {"status": "STARTED"}
    # Two executions (one per document) for seven subscribers, and every frame written
    # from the shared encoding: one delivery per subscriber, no execution each.
    assert counts == {"executed": 2, "framed": 7}


async def test_variables_are_part_of_the_key(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two subscribers to the same document with different variables never share: they
    watch different trips, so they also never see the same payload object."""
    a_rider, b_rider = await account(http), await account(http)
    driver = await account(http, "DRIVER")
    a_trip, b_trip = await request_trip(http, a_rider), await request_trip(http, b_rider)
    async with (
        session(server.ws_url, a_rider.access) as a,
        session(server.ws_url, b_rider.access) as b,
    ):
        await a.subscribe("t", FULL, {"id": a_trip["id"]})
        await b.subscribe("t", FULL, {"id": b_trip["id"]})
        await a.next("t")
        await b.next("t")
        await gql(http, ACCEPT_TRIP, {"id": a_trip["id"]}, token=driver.access)
        got = (await a.next("t"))["tripUpdated"]
        assert got["id"] == a_trip["id"] and got["status"] == "STARTED"
        # b's stream stays quiet: its next message is its own trip's change.
        other = await account(http, "DRIVER")
        await gql(http, ACCEPT_TRIP, {"id": b_trip["id"]}, token=other.access)
        got = (await b.next("t"))["tripUpdated"]
        assert got == {
            "id": b_trip["id"],
            "status": "STARTED",
            "driver": {"username": other.username},
        }
