"""The broadcast set-up: broadcaster's interface, with a Redis backend that heals.

broadcaster 0.3.1's own Redis backend loses the first subscriber's messages with
redis-py 8 and dies silently when Redis restarts (its listener ends and nobody
restarts it). This backend owns its pub/sub loop: it reconnects with backoff,
re-subscribes every channel, and then tells each channel's listeners to re-read the
current state (`events.RESYNC`), because messages published meanwhile are gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from broadcaster import Broadcast, BroadcastBackend, Event
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from taxi.core import metrics
from taxi.core.cluster import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    CONNECT_WAIT,
    PING_TIMEOUT,
    POOL_SIZE,
    POOL_WAIT,
    READ_TIMEOUT,
    REDIS_ERRORS,
    RESYNC,
    ShardedRedisBackend,
    cluster_client,
)
from taxi.core.config import Settings
from taxi.core.tasks import stop

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0
IDLE_PING = 5.0  # with no channel subscribed, ping this often to notice an outage


# What `redis_client` returns: both speak the same commands (keys of one multi-key
# command must share a slot on a cluster: use one hash tag, e.g. `taxi:{trip:ID}:...`).
RedisClient = aioredis.Redis | RedisCluster


def redis_client(source: Settings | str) -> RedisClient:
    """The Redis for counters and shared state: a cluster client when REDIS_CLUSTER_URL
    is set (it wins over REDIS_URL), else one Redis. A plain URL means one Redis.
    Services open it with `open_redis`, which also makes a cluster client safe for
    concurrent first use."""
    if isinstance(source, Settings):
        if source.redis_cluster_url:
            return cluster_client(source.redis_cluster_url)
        if not source.redis_url:
            raise ValueError("neither REDIS_CLUSTER_URL nor REDIS_URL is set")
        source = source.redis_url
    return _single(source)


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisClient]:
    """`redis_client(settings)`, ready for concurrent use, closed on exit."""
    client = redis_client(settings)
    try:
        if isinstance(client, RedisCluster):
            # Learn the slot map now, before the first requests: in redis-py 8.1 several
            # commands racing into a cluster client's *first* (lazy) initialisation fail
            # with RuntimeError/AttributeError (a closed transport, a node not yet set).
            # Later re-initialisations (after a failover) do not race. Bounded, and a
            # cluster that is down still lets the server start: commands retry it.
            with suppress(*REDIS_ERRORS, TimeoutError):
                async with asyncio.timeout(CONNECT_WAIT):
                    await client.initialize()
        yield client
    finally:
        await client.aclose()


def _single(url: str, *, protocol: int = 3) -> aioredis.Redis:
    # A pool that waits (bounded) for a free connection: redis-py's default one raises
    # MaxConnectionsError past POOL_SIZE commands in flight, which dropped publishes at
    # rush hour (PROTOCOL.md "Overload": pools wait, they do not fail).
    # No silent retries inside redis-py: the loop below must see every disconnect,
    # or it could not tell listeners that they missed messages.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        protocol=protocol,
    )
    return aioredis.Redis.from_pool(pool)


# Each (channel, message) pair: KEYS[i], ARGV[i].
PUBLISH_ALL = "for i, channel in ipairs(KEYS) do redis.call('PUBLISH', channel, ARGV[i]) end"


class ResilientRedisBackend(BroadcastBackend):
    def __init__(self, url: str) -> None:
        self._url = url
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self._closing = False
        self._up = asyncio.Event()  # set once the loop first connected

    async def connect(self) -> None:
        self._redis = self.client()
        self._publish_all = self._redis.register_script(PUBLISH_ALL)
        self._task = asyncio.create_task(self._run(), name="taxi-redis-pubsub")
        # A subscription opened before the loop first connects is only sent to Redis
        # when it connects, with no RESYNC after: events published in between were lost
        # (tripUpdated's "subscribe, then read the state" had a gap right after start).
        # Wait for it, bounded, so a server still starts while Redis is down.
        with suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_WAIT):
                await self._up.wait()

    def client(self) -> aioredis.Redis:
        """This backend's own Redis, in RESP2: a message is then a plain reply; in RESP3
        it is a push, which redis-py 8.1 hands to a handler that formats it for a debug
        log line (str() of every message, logging on or off). Publishes and pings
        answer the same in both."""
        return _single(self._url, protocol=2)

    async def disconnect(self) -> None:
        # redis-py may turn a cancellation into a ConnectionError, which the loop would
        # treat as an outage and retry forever: tell it we are closing first.
        self._closing = True
        await stop(self._task)
        await self._redis.aclose()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        if self._pubsub is not None and self.connected:
            # On failure the loop re-subscribes every channel when it reconnects.
            with suppress(RedisError, OSError):
                await self._pubsub.subscribe(channel)
        self._wake.set()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._pubsub is not None and self.connected:
            with suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: Any) -> None:
        await self._redis.publish(channel, message)

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        if len(messages) == 1:
            await self._redis.publish(*messages[0])
            return
        # One command for them all: a pipeline of PUBLISH cost redis-py ~34 µs of CPU a
        # message (a packed command and a parsed reply each), this script ~12. In order,
        # as the pipeline's.
        channels, payloads = zip(*messages, strict=True)
        await self._publish_all(keys=channels, args=payloads)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def ping(self) -> None:
        async with asyncio.timeout(PING_TIMEOUT):
            await self._redis.ping()

    async def _run(self) -> None:
        delay = MIN_BACKOFF
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._redis.ping()
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                self._pubsub = pubsub
                self.connected = True
                metrics.broadcast_state(connected=True)
                self._up.set()
                delay = MIN_BACKOFF
                if not first:
                    metrics.broadcast_reconnected()
                    log.info(
                        "redis pub/sub reconnected; resyncing %d channels", len(self._channels)
                    )
                    for channel in self._channels:
                        self._queue.put_nowait(Event(channel, RESYNC))
                first = False
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                if self.connected:
                    log.warning("redis pub/sub lost: %r; reconnecting", exc)
            finally:
                # Whatever ended this connection (an outage, or cancellation in the
                # middle of SUBSCRIBE at shutdown), its socket is closed here.
                self.connected = False
                metrics.broadcast_state(connected=False)
                self._pubsub = None
                with suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _listen(self, pubsub: Any) -> None:
        while True:
            if not pubsub.subscribed:
                # Nothing to read yet; wake on the first subscribe, and ping meanwhile
                # so an outage is noticed even on an idle process.
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races its timeout, and disconnect() would hang.
                try:
                    async with asyncio.timeout(IDLE_PING):
                        await self._wake.wait()
                except TimeoutError:
                    await self._redis.ping()
                continue
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_TIMEOUT)
            if message is not None and message["type"] == "message":
                self._queue.put_nowait(Event(message["channel"], message["data"]))


class Channels(Broadcast):
    """broadcaster's `Broadcast`, keeping a reference to its Redis backend (broadcaster's
    own is private) for the health check; None on `memory://`."""

    def __init__(self, backend: ResilientRedisBackend | ShardedRedisBackend | None) -> None:
        super().__init__(None if backend else "memory://", backend=backend)
        self.backend = backend


def create_broadcast(settings: Settings) -> Channels:
    if settings.redis_cluster_url:
        return Channels(ShardedRedisBackend(settings.redis_cluster_url))
    if settings.redis_url:
        return Channels(ResilientRedisBackend(settings.redis_url))
    return Channels(None)


@asynccontextmanager
async def open_broadcast(settings: Settings) -> AsyncIterator[Channels]:
    broadcast = create_broadcast(settings)
    await broadcast.connect()
    try:
        yield broadcast
    finally:
        await broadcast.disconnect()


async def publish_many(broadcast: Broadcast, messages: Sequence[tuple[str, str]]) -> None:
    """(channel, message) pairs in one round trip (one pipeline; on a cluster, one per
    shard involved): the location publishes of a loop pass's position reports."""
    backend = broadcast._backend
    if isinstance(backend, ResilientRedisBackend | ShardedRedisBackend):
        await backend.publish_many(messages)
        return
    for channel, message in messages:
        await broadcast.publish(channel, message)


async def ping(broadcast: Broadcast) -> None:
    """Raises when the backend cannot be reached (memory:// always answers)."""
    backend = broadcast.backend if isinstance(broadcast, Channels) else None
    if isinstance(backend, ShardedRedisBackend):
        await backend.ping()
    if isinstance(backend, ResilientRedisBackend):
        await backend.ping()
        if not backend.connected:
            raise ConnectionError("redis pub/sub is reconnecting")
