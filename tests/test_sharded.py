"""The sharded pub/sub backend (taxi/core/cluster.py) on a private Redis Cluster: channels
spread over the shards, each on its own connection, and a slot that moves to another
node (a manual failover: no connection breaks) heals like a crash: the channel is
re-subscribed on the new primary and its listeners get RESYNC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path

import pytest
from broadcaster import Broadcast, Event

from taxi.core.broadcast import open_broadcast, redis_client
from taxi.core.cluster import ShardedRedisBackend, startup_nodes
from taxi.domain.events import RESYNC
from tests.backends import base_settings
from tests.rcluster import PrivateCluster, private_cluster
from tests.wait import eventually

WITHIN = 30.0  # a shared, busy machine: generous, and never slept


def test_cluster_url_forms() -> None:
    nodes, options = startup_nodes("redis://a:7000, b:7001,[::1]:7002,c")
    assert [(n.host, n.port) for n in nodes] == [
        ("a", 7000), ("b", 7001), ("::1", 7002), ("c", 6379)
    ]  # fmt: skip
    assert options == {"ssl": False}
    _, options = startup_nodes("rediss://u%40x:p%3Aw@a:7000,b:7001")
    assert options == {"ssl": True, "username": "u@x", "password": "p:w"}
    with pytest.raises(ValueError, match="REDIS_CLUSTER_URL"):
        startup_nodes("http://a:7000")


@asynccontextmanager
async def listening(broadcast: Broadcast, channel: str) -> AsyncIterator[asyncio.Queue[Event]]:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    ready = asyncio.Event()

    async def pump() -> None:
        async with broadcast.subscribe(channel) as subscriber:
            ready.set()
            while True:  # get(), as `async for` does (broadcaster mistypes __aiter__)
                queue.put_nowait(await subscriber.get())

    task = asyncio.create_task(pump())
    try:
        await ready.wait()
        yield queue
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def next_message(queue: asyncio.Queue[Event], wanted: str) -> None:
    """Waits for `wanted` on the queue; anything else before it fails."""
    async with asyncio.timeout(WITHIN):
        event = await queue.get()
    assert event.message == wanted, event


async def delivered(
    broadcast: Broadcast, queue: asyncio.Queue[Event], channel: str, message: str
) -> None:
    """Publishes `message` until it arrives. The contract is that a message is delivered
    or, if it may have been lost, followed by RESYNC (the listener re-reads): so a
    RESYNC, and only a RESYNC, may come instead, and the message is published again.

    Under load a subscription can still be settling when the test publishes: a shard's
    first connect slower than CONNECT_WAIT, or a slot map refreshed from a node that
    had not yet heard of the failover (the channel then moves once more, resynced
    again). Expecting exactly one RESYNC and then the message failed in a loaded run."""
    async with asyncio.timeout(WITHIN):
        while True:
            await broadcast.publish(channel, message)
            event = await queue.get()
            if event.message == message:
                return
            assert event.message == RESYNC, event


async def _replica_of(rc: PrivateCluster, primary: int) -> int:
    for port in rc.ports:
        info = await asyncio.to_thread(rc.cli, port, "INFO", "replication")
        if f"master_port:{primary}" in info:
            return port
    raise AssertionError(f"no replica of {primary}")


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[PrivateCluster]:
    async with private_cluster(tmp_path / "cluster") as cluster:
        yield cluster


async def test_channels_spread_over_shards_and_heal_after_a_manual_failover(
    rc: PrivateCluster,
) -> None:
    settings = base_settings(redis_cluster_url=rc.url)
    channels = await _four_per_shard(rc)
    async with open_broadcast(settings) as broadcast, AsyncExitStack() as stack:
        assert isinstance(broadcast.backend, ShardedRedisBackend)
        queues = {}
        for channel in channels:
            queues[channel] = await stack.enter_async_context(listening(broadcast, channel))
        owners = {await rc.primary_of(c) for c in channels}
        assert len(owners) == 3, owners
        for channel in channels:
            await delivered(broadcast, queues[channel], channel, "before")

        # Promote a replica while its primary is alive: the slots move, nothing breaks.
        moved = channels[0]
        old = await rc.primary_of(moved)
        replica = await _replica_of(rc, old)
        await _fail_over(rc, replica)
        await _until_primary(rc, moved, replica)

        # Every channel of the moved shard is told to re-read; the others are not.
        on_moved = [c for c in channels if await rc.primary_of(c) == replica]
        for channel in on_moved:
            await next_message(queues[channel], RESYNC)
        await delivered(broadcast, queues[moved], moved, "after")
        for channel in channels:
            if channel not in on_moved:
                assert queues[channel].empty(), channel
        client = redis_client(settings)
        try:
            assert await client.set(f"{{{moved}}}:k", "v")  # commands follow the move too
        finally:
            await client.aclose()


async def _four_per_shard(rc: PrivateCluster) -> list[str]:
    """Twelve channels, four served by each primary. (Twelve random ones miss a shard in
    about one run of forty-three: 3 x (2/3)^12; it happened once in CI.)"""
    by_owner: dict[int, list[str]] = {}
    for i in range(300):
        channel = f"taxi-test:{uuid.uuid4().hex}:{i}"
        owned = by_owner.setdefault(await rc.primary_of(channel), [])
        if len(owned) < 4:
            owned.append(channel)
        if len(by_owner) == 3 and all(len(c) == 4 for c in by_owner.values()):
            return [c for owned in by_owner.values() for c in owned]
    raise AssertionError(f"no four channels on each shard in 300: {by_owner}")


async def _role(rc: PrivateCluster, port: int) -> str:
    return await asyncio.to_thread(rc.cli, port, "INFO", "replication")


async def _fail_over(rc: PrivateCluster, replica: int) -> None:
    """A manual CLUSTER FAILOVER, as an operator runs it: only once the replica is in sync
    (Redis silently aborts a manual failover that cannot catch up in time), and again while
    Redis has not made it a primary (what is under test is the app's healing after the
    move, not Redis's handshake)."""
    await eventually(
        lambda: _role(rc, replica),
        lambda info: "master_link_status:up" in info,
        within=WITHIN,
        what=f"{replica} in sync with its primary",
    )
    for _ in range(3):
        out = await asyncio.to_thread(rc.cli, replica, "CLUSTER", "FAILOVER")
        assert "OK" in out, out
        try:
            await eventually(
                lambda: _role(rc, replica),
                lambda info: "role:master" in info,
                within=WITHIN / 3,
                what=f"{replica} promoted",
            )
            return
        except AssertionError:
            continue  # aborted by Redis: ask again
    raise AssertionError(f"{replica} was never promoted by CLUSTER FAILOVER")


async def _until_primary(rc: PrivateCluster, key: str, port: int) -> None:
    await eventually(
        lambda: rc.primary_of(key),
        lambda primary: primary == port,
        within=WITHIN,
        what=f"{port} {key}'s primary",
    )
