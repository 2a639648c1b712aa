"""Trip events, read straight from the broadcast layer (memory:// or Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from redis import asyncio as aioredis

from taxi.core.broadcast import open_broadcast, publish_many
from taxi.domain import events
from taxi.domain.models import Trip
from tests.backends import REDIS_URL, base_settings, need_real, sub_prefix
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    REPORT_LOCATION,
    UPDATE_STATUS,
    account,
    error_code,
    gql,
    request_trip,
)


@asynccontextmanager
async def listen(app: Any, channel: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """Subscribe, and make sure the subscription is live before the test acts: a probe
    published on the channel must come back first."""
    broadcast = app.state.services.broadcast
    channel = events.full_channel(app.state.settings.channel_prefix, channel)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    probe = f"probe-{uuid.uuid4().hex}"
    ready = asyncio.Event()

    async def pump() -> None:
        async with broadcast.subscribe(channel) as subscriber:
            ready.set()
            async for event in subscriber:
                if event.message == probe:
                    queue.put_nowait({"kind": "probe"})
                elif event.message != events.RESYNC:
                    queue.put_nowait(orjson.loads(event.message))

    task = asyncio.create_task(pump())
    try:
        await ready.wait()
        async with asyncio.timeout(5):
            while True:
                await broadcast.publish(channel, probe)
                try:
                    async with asyncio.timeout(0.2):
                        if (await queue.get())["kind"] == "probe":
                            break
                except TimeoutError:
                    continue
        while not queue.empty():  # later copies of the probe
            queue.get_nowait()
        yield queue
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def next_event(queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            item = await queue.get()
            if item["kind"] != "probe":
                return item


async def test_request_event_carries_the_full_state(client: httpx.AsyncClient, app: Any) -> None:
    rider = await account(client)
    async with listen(app, events.POOL) as pool:
        trip = await request_trip(client, rider)
        # Other tests may share this Redis: skip requests that are not ours.
        while (event := await next_event(pool))["key"] != trip["id"]:
            pass
    assert event["kind"] == "requested" and event["left_pool"] is False
    state = event["trip"]
    assert state["id"] == trip["id"] and state["status"] == "REQUESTED"
    assert state["pick_up_address"] == trip["pickUpAddress"]
    assert state["rider"]["id"] == int(rider.id)
    assert state["rider"]["username"] == rider.username
    assert state["driver"] is None
    assert isinstance(event["at"], float)


async def test_published_only_after_commit(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment of publishing, another connection already sees the new state."""
    rider, driver = await account(client), await account(client, "DRIVER")
    trip = await request_trip(client, rider)
    seen: list[tuple[str, str]] = []

    async def check(messages: Sequence[tuple[str, str]]) -> None:
        for _, message in messages:
            data = orjson.loads(message)
            if data.get("key") == trip["id"] and "trip" in data:
                async with app.state.services.db() as session:
                    row = await session.get(Trip, uuid.UUID(trip["id"]))
                    assert row is not None
                    seen.append((data["trip"]["status"], row.status.value))

    observe_publishes(monkeypatch, app, check)
    await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=driver.access)
    await gql(
        client, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, token=driver.access
    )
    assert seen and all(published == committed for published, committed in seen)
    assert {s for s, _ in seen} == {"STARTED", "IN_PROGRESS"}


async def test_a_changes_publishes_go_out_together(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requestTrip's messages (the trip's channel, every trip's, the pool) go out in one
    call (one pipeline, one round trip), not awaited one after another inside the
    response, nor a command and a pooled connection each."""
    rider = await account(client)
    calls: list[list[str]] = []

    async def record(messages: Sequence[tuple[str, str]]) -> None:
        calls.append([channel for channel, _ in messages])

    observe_publishes(monkeypatch, app, record)
    trip = await request_trip(client, rider)
    prefix = app.state.settings.channel_prefix
    ours = [c for c in calls if events.full_channel(prefix, events.trip_channel(trip["id"])) in c]
    assert ours == [
        [
            events.full_channel(prefix, channel)
            for channel in (events.trip_channel(trip["id"]), events.TRIPS, events.POOL)
        ]
    ]


def observe_publishes(
    monkeypatch: pytest.MonkeyPatch,
    app: Any,
    seen: Callable[[Sequence[tuple[str, str]]], Awaitable[None]],
) -> None:
    """`seen` hears of each call that publishes, (channel, message) pairs, before it
    goes out: one message (the broadcast's publish) or several together (publish_many)."""
    broadcast = app.state.services.broadcast
    real_publish, real_many = broadcast.publish, events.publish_many
    within: list[object] = []  # publish_many under way (memory:// publishes one by one)

    async def publish(channel: str, message: str) -> None:
        if not within:
            await seen([(channel, message)])
        await real_publish(channel, message)

    async def publish_many(to: Any, messages: Sequence[tuple[str, str]]) -> None:
        await seen(list(messages))
        within.append(messages)
        try:
            await real_many(to, messages)
        finally:
            within.remove(messages)

    monkeypatch.setattr(broadcast, "publish", publish)
    monkeypatch.setattr(events, "publish_many", publish_many)


async def test_no_event_for_a_failed_mutation(client: httpx.AsyncClient, app: Any) -> None:
    rider = await account(client)
    winner, loser = await account(client, "DRIVER"), await account(client, "DRIVER")
    trip = await request_trip(client, rider)
    async with listen(app, events.trip_channel(trip["id"])) as queue:
        ok = await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=winner.access)
        assert "errors" not in ok
        lost = await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=loser.access)
        assert error_code(lost) == "CONFLICT"
        bad = await gql(
            client, UPDATE_STATUS, {"id": trip["id"], "status": "COMPLETED"}, token=winner.access
        )
        assert error_code(bad) == "CONFLICT"
        refused = await gql(client, CANCEL_TRIP, {"id": trip["id"]}, token=winner.access)
        assert error_code(refused) == "FORBIDDEN"
        await gql(
            client, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, token=winner.access
        )
        first, second = await next_event(queue), await next_event(queue)
        assert queue.empty()
    assert (first["kind"], first["trip"]["status"]) == ("accepted", "STARTED")
    assert first["left_pool"] is True
    assert first["trip"]["driver"]["id"] == int(winner.id)
    assert (second["kind"], second["trip"]["status"]) == ("status", "IN_PROGRESS")


async def test_location_events(client: httpx.AsyncClient, app: Any) -> None:
    rider, driver = await account(client), await account(client, "DRIVER")
    trip = await request_trip(client, rider)
    await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=driver.access)
    async with listen(app, events.location_channel(trip["id"])) as queue:
        location = {"latitude": 48.85, "longitude": 2.35, "heading": 180.0}
        await gql(
            client,
            REPORT_LOCATION,
            {"tripId": trip["id"], "location": location},
            token=driver.access,
        )
        event = await next_event(queue)
    assert event["kind"] == "location"
    assert {k: event["location"][k] for k in location} == location
    # Who may watch, not the whole trip: the report path reads nothing from the database.
    assert event["parties"] == [int(rider.id), int(driver.id)]


async def test_messages_published_together_arrive_in_order_on_one_redis() -> None:
    """One Redis's backend publishes several messages in one command (a script): each
    subscriber gets every message of its channel, in order, and a script Redis forgot
    (a restart, SCRIPT FLUSH) is loaded again."""
    need_real()
    prefix = sub_prefix("many")
    channels = [f"{prefix}:a", f"{prefix}:b"]
    async with (
        open_broadcast(base_settings(redis_url=REDIS_URL)) as broadcast,
        AsyncExitStack() as stack,
    ):
        got = {c: await stack.enter_async_context(broadcast.subscribe(c)) for c in channels}
        sent = [(channels[i % 2], f"m{i}") for i in range(7)]
        for round_ in range(2):
            await publish_many(broadcast, sent)
            for channel, subscriber in got.items():
                wanted = [m for c, m in sent if c == channel]
                assert [(await subscriber.get()).message for _ in wanted] == wanted
            if round_ == 0:
                async with aioredis.Redis.from_url(REDIS_URL) as redis:
                    await redis.script_flush()
