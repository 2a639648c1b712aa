"""Redis Cluster: the client factory and a broadcast backend on sharded pub/sub.

In a cluster, plain PUBLISH is copied to every node, so pub/sub would not scale out;
SPUBLISH/SSUBSCRIBE route a channel to the shard that owns its slot. redis-py's
asyncio `ClusterPubSub` routes SSUBSCRIBE by slot and re-homes channels when the slot
map changes, but nothing tells its user that messages were lost meanwhile. So this
backend runs one `ClusterPubSub` per shard (per primary at the time the first channel
was subscribed) in its own loop, with the self-healing of the single-node backend:
when a shard's connection fails it refreshes the slot map, re-subscribes that
shard's channels (on the promoted replica after a failover) with backoff, and sends
`events.RESYNC` on each of them so live subscriptions re-read the current state.
Channels on the other shards are untouched."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from broadcaster import BroadcastBackend, Event
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from taxi.core import metrics
from taxi.core.redis_adapter import closed_under, pubsub_nodes, python_parser, refresh_slots
from taxi.core.tasks import stop

log = logging.getLogger(__name__)

# Sent by the broadcast backend on a channel after it reconnected: messages may have
# been missed, so watchers re-read the current state once.
RESYNC = "__resync__"

# What a cluster call may raise: RedisClusterException (e.g. SlotNotCoveredError while
# a failover is under way) is not a RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)

MIN_BACKOFF = 0.05
# Short: a failover takes about node-timeout plus an election, and the loop should
# notice the promoted replica soon after.
MAX_BACKOFF = 1.0
# How long start-up waits for a first connection (a shard's first subscribe, the
# single-node pub/sub loop, a slot map): bounded, so a server starts with Redis down.
CONNECT_WAIT = 5.0
READ_TIMEOUT = 1.0  # a blocking pub/sub read; also how often a loop sees its channel set
CONNECT_TIMEOUT = 2  # one connection attempt to a Redis node
COMMAND_TIMEOUT = 5  # one reply from a Redis node
PING_TIMEOUT = 2  # a health check's ping
DEFAULT_PORT = 6379
POOL_SIZE = 100  # connections to one Redis (or one cluster node) per client: redis-py's default
POOL_WAIT = 5.0  # seconds a command waits for one of them, then fails (an outage)


def startup_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """`redis[s]://[user:pass@]host:port,host:port,...` → nodes and connection options."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise ValueError("REDIS_CLUSTER_URL must start with redis:// or rediss://")
    auth, _, hosts = parts.netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss"}
    if auth:
        user, _, password = auth.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host:
            host, port = port, str(DEFAULT_PORT)
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return nodes, options


# Set while a command or pipeline holds a turn: a pipeline re-sends a redirected command
# through the client, within its own turn.
_TURN: contextvars.ContextVar[bool] = contextvars.ContextVar("taxi_cluster_turn", default=False)


class WaitingCluster(RedisCluster):
    """A cluster client whose commands wait (bounded) for a connection when all are busy.

    redis-py's cluster nodes raise MaxConnectionsError past `max_connections` commands in
    flight to one node, and it offers no blocking pool for a cluster (the single-Redis
    client takes BlockingConnectionPool). Commands and pipelines here take a turn first,
    at most `max_connections` at once per client; each holds at most one connection per
    node, so no node's pool runs out. Past `wait` seconds without a turn: ConnectionError,
    as the single-Redis pool raises (PROTOCOL.md "Overload": pools wait, then fail)."""

    def __init__(self, *, max_connections: int, wait: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._turns = asyncio.Semaphore(max_connections)
        self._wait = wait

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if _TURN.get():
            yield
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        held = _TURN.set(True)
        try:
            yield
        finally:
            _TURN.reset(held)
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            with outage_if_closed_under():
                return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        # redis-py's typing reads ClusterPipeline as abstract; its own `pipeline` makes one.
        return _WaitingPipeline(self, transaction, shard_hint)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    """A pipeline that takes its client's turn for its round trips."""

    __slots__ = ("_waiting",)

    def __init__(self, client: WaitingCluster, transaction: Any, shard_hint: Any) -> None:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        super().__init__(client, transaction)
        self._waiting = client

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with self._waiting.turn():
            with outage_if_closed_under():
                return await super().execute(raise_on_error, allow_redirections)


@contextmanager
def outage_if_closed_under() -> Iterator[None]:
    """A connection closed under its command (`closed_under`) raises ConnectionError, as
    any other lost connection: an outage its caller answers SERVICE_UNAVAILABLE (the
    failover test saw INTERNAL_SERVER_ERROR for a position report)."""
    try:
        yield
    except (AttributeError, TypeError) as exc:
        if not closed_under(exc):
            raise
        raise RedisConnectionError(f"connection closed under the command: {exc}") from exc


def cluster_client(
    url: str, *, max_connections: int = POOL_SIZE, wait: float = POOL_WAIT
) -> WaitingCluster:
    """A cluster client. Its own retry policy (refresh the slot map, try again) carries
    commands across a failover; a command that still fails raises, so callers decide.
    Past `max_connections` commands in flight they wait (`WaitingCluster`)."""
    nodes, options = startup_nodes(url)
    client = WaitingCluster(
        startup_nodes=nodes,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        max_connections=max_connections,
        wait=wait,
        **options,
    )
    python_parser(client)  # not hiredis (taxi/core/redis_adapter.py)
    return client


class _Shard:
    __slots__ = ("channels", "connected", "first", "name", "pubsub", "task", "up")

    def __init__(self, name: str) -> None:
        self.name = name
        self.channels: set[str] = set()
        self.pubsub: ClusterPubSub | None = None
        self.connected = False
        self.first = True  # no RESYNC on the first connect: subscribers wait for it
        self.up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class ShardedRedisBackend(BroadcastBackend):
    def __init__(self, url: str) -> None:
        self._url = url
        self._shards: dict[str, _Shard] = {}
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._closing = False

    async def connect(self) -> None:
        self._cluster = cluster_client(self._url)
        # Reach the cluster once now, bounded, so the first subscriptions find the slot
        # map; a cluster that is down still lets the server start (and heal later).
        with suppress(*REDIS_ERRORS, TimeoutError):
            async with asyncio.timeout(CONNECT_WAIT):
                await self._cluster.initialize()

    async def disconnect(self) -> None:
        self._closing = True
        await asyncio.gather(*(self._stop(shard) for shard in list(self._shards.values())))
        self._shards.clear()
        await self._cluster.aclose()

    @property
    def connected(self) -> bool:
        return all(shard.connected for shard in self._shards.values())

    def _owner(self, channel: str) -> str:
        try:
            node = self._cluster.get_node_from_key(channel)
        except REDIS_ERRORS:
            node = None
        # No slot map yet: the shard's loop finds the owner when it connects.
        return node.name if node is not None else "?"

    def _start(self, name: str, *, resync: bool) -> _Shard:
        shard = self._shards[name] = _Shard(name)
        shard.first = not resync
        # An empty context: the loop outlives the request that happened to start it
        # (its logs must not carry that request's id).
        shard.task = asyncio.create_task(
            self._run(shard), name=f"taxi-shard-{name}", context=contextvars.Context()
        )
        return shard

    async def _add(self, shard: _Shard, channel: str, *, resync: bool) -> None:
        shard.channels.add(channel)
        if shard.pubsub is not None and shard.connected:
            # On failure the loop re-subscribes (and resyncs) every channel.
            with suppress(*REDIS_ERRORS):
                await shard.pubsub.ssubscribe(channel)
                if resync:
                    self._queue.put_nowait(Event(channel, RESYNC))

    async def subscribe(self, channel: str) -> None:
        name = self._owner(channel)
        shard = self._shards.get(name) or self._start(name, resync=False)
        await self._add(shard, channel, resync=False)
        if shard.first:
            # The caller reads the current state next: the subscription must be live
            # first. If the shard cannot connect in time, its connect will resync (as
            # does every reconnect of a shard that was up before).
            try:
                async with asyncio.timeout(CONNECT_WAIT):
                    await shard.up.wait()
            except TimeoutError:
                shard.first = False

    async def _rehome(self, shard: _Shard) -> bool:
        """After a failure: channels whose slot another primary serves now (a promoted
        replica, or a map learned late) move to that primary's shard, resynced there.
        False when none is left here (the shard ends)."""
        for channel in list(shard.channels):
            name = self._owner(channel)
            if name in (shard.name, "?"):
                continue
            shard.channels.discard(channel)
            target = self._shards.get(name) or self._start(name, resync=True)
            await self._add(target, channel, resync=True)
        if shard.channels:
            return True
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        return False

    async def unsubscribe(self, channel: str) -> None:
        for shard in list(self._shards.values()):
            if channel not in shard.channels:
                continue
            shard.channels.discard(channel)
            if not shard.channels:
                del self._shards[shard.name]
                await self._stop(shard)
            elif shard.pubsub is not None and shard.connected:
                with suppress(*REDIS_ERRORS):
                    await shard.pubsub.sunsubscribe(channel)

    async def _stop(self, shard: _Shard) -> None:
        await stop(shard.task)

    async def publish(self, channel: str, message: Any) -> None:
        try:
            await self._cluster.spublish(channel, message)
        except RedisClusterException as exc:
            # Callers (events.Publisher) handle RedisError: a slot without an owner
            # mid-failover is the same "not published" to them.
            raise RedisConnectionError(str(exc)) from exc

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        try:
            async with self._cluster.pipeline() as pipe:
                for channel, message in messages:
                    pipe.spublish(channel, message)
                await pipe.execute()
        except RedisClusterException as exc:
            raise RedisConnectionError(str(exc)) from exc

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def ping(self) -> None:
        async with asyncio.timeout(PING_TIMEOUT):
            info = await self._cluster.cluster_info()
        if info.get("cluster_state") != "ok":
            raise RedisConnectionError(f"cluster_state:{info.get('cluster_state')}")
        if not self.connected:
            raise RedisConnectionError("a shard's pub/sub is reconnecting")

    async def _run(self, shard: _Shard) -> None:
        delay = MIN_BACKOFF
        while True:
            pubsub = self._cluster.pubsub()
            try:
                # Routed by slot: after a failover this reaches the promoted replica.
                channels = list(shard.channels)
                await pubsub.ssubscribe(*channels)
                if late := shard.channels.difference(channels):
                    await pubsub.ssubscribe(*late)  # added while this was under way
                    channels += late
                shard.pubsub = pubsub
                shard.connected = True
                metrics.broadcast_state(connected=self.connected)  # every shard up
                shard.up.set()
                delay = MIN_BACKOFF
                if not shard.first:
                    metrics.broadcast_reconnected()
                    log.info(
                        "shard %s re-subscribed; resyncing %d channels", shard.name, len(channels)
                    )
                    for channel in channels:
                        self._queue.put_nowait(Event(channel, RESYNC))
                shard.first = False
                await self._listen(shard, pubsub)
            except REDIS_ERRORS as exc:
                if self._closing:
                    return
                if shard.connected:
                    log.warning("shard %s pub/sub lost: %r; reconnecting", shard.name, exc)
                shard.first = False
            finally:
                shard.connected = False
                # False while this shard is registered; a stopped one leaves the others'.
                metrics.broadcast_state(connected=self.connected)
                shard.pubsub = None
                with suppress(*REDIS_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
            # The slot map may have changed (a replica promoted): ask the cluster again.
            with suppress(*REDIS_ERRORS):
                await self._cluster.initialize()  # a no-op once it succeeded
                await refresh_slots(self._cluster)
            if not await self._rehome(shard):
                return

    async def _listen(self, shard: _Shard, pubsub: ClusterPubSub) -> None:
        nodes = pubsub_nodes(pubsub)
        while True:
            message = await pubsub.get_sharded_message(timeout=READ_TIMEOUT)
            if message is None:
                if pubsub_nodes(pubsub) != nodes:
                    # redis-py moved channels to another node by itself (after a slot
                    # map refresh), or dropped the connection: messages may be gone.
                    raise RedisConnectionError(f"shard {shard.name} changed nodes")
                continue
            kind = message["type"]
            if kind == "smessage":
                self._queue.put_nowait(Event(message["channel"], message["data"]))
            elif kind == "sunsubscribe" and message["channel"] in shard.channels:
                # The server dropped a channel we still want: its slot moved (e.g. a
                # manual failover). redis-py re-homes it quietly; messages in between
                # are gone, so heal (and resync) as after a lost connection.
                raise RedisConnectionError(f"slot of {message['channel']} moved")
