"""The library internals taxi relies on, each in its adapter module, are still where the
adapter expects them: run on every `make test` (no PostgreSQL or Redis needed), so `make
upgrade` followed by `make test` notices when an upgrade moved one. Behaviour is checked
through real sockets: the uvicorn protocols `taxi serve` runs (the httptools guard, 1001 on
shutdown, the frame seam) serve an in-process server here."""

from __future__ import annotations

import asyncio
import inspect
import re
import weakref
from typing import Any

import broadcaster
import pytest
from graphql import (
    ExecutionResult,
    Executor,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
    build_schema,
    parse,
)
from redis._parsers import _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from uvicorn import Config
from uvicorn.server import ServerState
from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol

from taxi import cli
from taxi.api.graphql_adapter import Acyclic
from taxi.core import broadcast, redis_adapter
from taxi.core.broadcast import Channels, ResilientRedisBackend
from taxi.core.cluster import ShardedRedisBackend, cluster_client, outage_if_closed_under
from taxi.core.config import Settings
from taxi.transport import server
from taxi.transport.live.protocol import GOING_AWAY
from tests.helpers import account, request_trip
from tests.live import serve
from tests.ws import session

ASSIGNED = r"self\.{}\s*[:=]"


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


def _defines(base: type, instance: object, name: str) -> bool:
    """`name` is a class attribute, set by the constructor, or assigned by the library's
    own code (per connection: `scope`, `url`, `transport`, ...)."""
    if hasattr(instance, name):
        return True
    source = "".join(
        inspect.getsource(k) for k in base.__mro__ if k.__module__.startswith("uvicorn")
    )
    return re.search(ASSIGNED.format(name), source) is not None


@pytest.mark.parametrize("base", list(server.INTERNALS), ids=lambda b: b.__name__)
async def test_uvicorn_internals_are_where_the_adapter_reads_them(base: type) -> None:
    config = Config(app=_noop_app, ws="websockets-sansio", http="httptools")
    config.load()
    instance = base(config=config, server_state=ServerState(), app_state={})
    missing = [n for n in server.INTERNALS[base] if not _defines(base, instance, n)]
    assert missing == [], f"uvicorn {base.__name__} moved: {missing}"
    # Overridden methods keep the library's parameters (uvicorn calls them).
    ours = next(
        c for c in (server.WebSocketProtocol, server.GuardedHttpToolsProtocol) if base in c.__mro__
    )
    for name in server.INTERNALS[base]:
        mine = ours.__dict__.get(name)
        if callable(mine):
            theirs = inspect.signature(getattr(base, name)).parameters
            assert list(inspect.signature(mine).parameters) == list(theirs), name


def test_websockets_parser_waits_where_the_splitter_looks() -> None:
    """taxi/transport/server.py splits frames itself only while websockets' parser waits
    at a frame's start: that wait must still be seen there, and a half frame not."""
    conn = ServerProtocol(state=State.OPEN, max_size=1024)
    for name in server.WEBSOCKETS_INTERNALS:
        assert hasattr(conn, name), name
    assert server.at_frame_start(conn)
    text = b'{"type": "ping"}'
    masked = bytes([0x81, 0x80 | len(text)]) + b"\0\0\0\0" + text  # mask of zeros
    conn.receive_data(masked[:3])
    assert not server.at_frame_start(conn)  # mid-header
    conn.receive_data(masked[3:])
    (received,) = conn.events_received()
    assert isinstance(received, Frame) and received.data == text
    assert server.at_frame_start(conn)
    conn.receive_data(bytes([0x01, 0x80 | 1]) + b"\0\0\0\0x")  # a first fragment
    conn.events_received()
    assert not server.at_frame_start(conn)  # a fragmented message under way


async def test_redis_internals_are_where_the_adapter_reads_them() -> None:
    cluster = RedisCluster(host="127.0.0.1", port=1)  # never connects here
    pubsub = cluster.pubsub()
    try:
        for cls, name in redis_adapter.INTERNALS:
            instance = {RedisCluster: cluster, type(pubsub): pubsub}.get(cls)
            assert hasattr(instance if instance is not None else cls, name), (cls, name)
        assert inspect.iscoroutinefunction(cluster.nodes_manager.initialize)
        assert redis_adapter.pubsub_nodes(pubsub) == frozenset()
    finally:
        await pubsub.aclose()
        await cluster.aclose()


def test_one_redis_parses_replies_with_hiredis() -> None:
    """hiredis is installed and one Redis's connections use it (a connection is built
    from each client's own options; nothing connects); the pub/sub one speaks RESP2."""
    single = connection_of(broadcast.redis_client("redis://127.0.0.1:1/0"))
    assert isinstance(single._parser, _AsyncHiredisParser) and single.protocol == 3
    pubsub = connection_of(broadcast.ResilientRedisBackend("redis://127.0.0.1:1/0").client())
    assert isinstance(pubsub._parser, _AsyncHiredisParser) and pubsub.protocol == 2


def connection_of(client: object) -> Connection:
    assert isinstance(client, Redis)
    pool = client.connection_pool
    made = pool.connection_class(**pool.connection_kwargs)
    assert isinstance(made, Connection)
    return made


async def test_a_clusters_connections_keep_the_python_parser(redis_cluster_url: str) -> None:
    """Every node a cluster client learns of, startup nodes or not, makes connections
    that parse with the adapter's parser, and its sharded pub/sub's do too."""
    cluster = cluster_client(redis_cluster_url.split(",")[0])  # one seed: the rest learnt
    try:
        await cluster.initialize()
        nodes = cluster.get_nodes()
        assert len(nodes) >= 3
        for node in nodes:
            made = Connection(**node.connection_kwargs)
            assert type(made._parser) is redis_adapter.CLUSTER_PARSER, node.name
        await cluster.set("taxi-test:{adapter}:parser", "1", ex=5)
        assert await cluster.get("taxi-test:{adapter}:parser") == "1"
    finally:
        await cluster.aclose()


@pytest.mark.parametrize("ours", [ResilientRedisBackend, ShardedRedisBackend])
def test_our_broadcast_backends_implement_broadcasters_public_base(ours: type) -> None:
    """broadcaster's public `BroadcastBackend` (no private module is imported): each
    method `Broadcast` calls is ours, taking what the base takes."""
    base = broadcaster.BroadcastBackend
    assert issubclass(ours, base)
    for name, method in inspect.getmembers(base, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(ours, name)
        assert mine is not method, f"{ours.__name__} does not implement {name}"
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(method), name
        # Broadcast passes arguments by position: their number and kinds must match.
        theirs = [q.kind for q in inspect.signature(method).parameters.values()]
        assert [q.kind for q in inspect.signature(mine).parameters.values()] == theirs, name
    assert "backend" in inspect.signature(broadcaster.Broadcast).parameters


async def test_memory_broadcast_through_channels() -> None:
    """`Channels` is broadcaster's Broadcast on memory:// when no Redis is configured."""
    broadcast = Channels(None)
    await broadcast.connect()
    try:
        async with broadcast.subscribe("c") as subscriber:
            await broadcast.publish("c", "hello")
            async with asyncio.timeout(5):
                event = await subscriber.get()
        assert event.message == "hello"
    finally:
        await broadcast.disconnect()


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _reply(reader: asyncio.StreamReader) -> bytes:
    data = b""
    async with asyncio.timeout(10):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass  # refused while data was in flight: closed all the same
    return data


async def test_httptools_guard_refuses_oversized_headers(settings: Settings) -> None:
    async with serve(settings, http=server.HTTP) as live:
        # Past the limit before the head ends: 431 and closed, while others are served.
        reader, writer = await _raw(live.url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(4):
                writer.write(b"a" * server.MAX_HEADER_BYTES)
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        async with live.http() as client:
            assert (await client.get("/healthz")).status_code == 200
        reply = await _reply(reader)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431 "), reply[:100]
        writer.close()
        # A whole head over the limit arriving in one read: 400 and closed.
        reader, writer = await _raw(live.url)
        big = b"X-Big: " + b"b" * server.MAX_HEADER_BYTES + b"\r\n"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        reply = await _reply(reader)
        assert reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:100]
        writer.close()
        # Up to the limit, headers are fine.
        async with live.http() as client:
            filler = "c" * (server.MAX_HEADER_BYTES - 1024)
            assert (await client.get("/healthz", headers={"X-Fill": filler})).status_code == 200


async def test_open_sockets_get_going_away_on_shutdown(settings: Settings) -> None:
    """The WebSocket protocol `taxi serve` runs closes open sockets with 1001 when uvicorn
    shuts down (uvicorn's own sends 1012). Its frame seam: tests/test_ws.py."""
    async with serve(settings, ws=server.WEBSOCKET) as live:
        async with live.http() as client:
            rider = await account(client, "RIDER")
            trip = await request_trip(client, rider)
        async with session(live.ws_url, rider.access) as ws:
            await ws.subscribe(
                "1",
                "subscription($id: ID!) { tripUpdated(id: $id) { id } }",
                {"id": trip["id"]},
            )
            assert await ws.next("1") == {"tripUpdated": {"id": trip["id"]}}
            live.shut_down()
            await ws.closed(GOING_AWAY)


def test_taxi_serve_names_the_adapters_protocols() -> None:
    """`taxi serve` passes the protocols to uvicorn by name, without importing them (its
    supervising process must not load the app's metrics): the names must be these."""
    source = inspect.getsource(cli._run)
    assert f'http="{server.HTTP}"' in source
    assert f'ws="{server.WEBSOCKET}"' in source


async def test_a_connection_closed_under_its_command_is_an_outage(redis_cluster_url: str) -> None:
    """A cluster node's connection closed while a command is about to write (redis-py's
    cluster client closes every node's connections mid-failover) raises AttributeError
    from where redis-py writes: `closed_under` knows it, and the cluster client raises
    ConnectionError for it (an outage: SERVICE_UNAVAILABLE, not INTERNAL_SERVER_ERROR).
    Fails when redis-py's connection writes elsewhere or raises something else there."""
    cluster = cluster_client(redis_cluster_url.split(",")[0])
    try:
        await cluster.initialize()
        node = cluster.get_node_from_key("taxi-test:{adapter}:closed")
        assert node is not None
        conn = Connection(**node.connection_kwargs)
        await conn.connect()  # type: ignore[no-untyped-call]
        command = conn.pack_command("PING")
        writing = asyncio.create_task(conn.send_packed_command(command, check_health=False))
        await asyncio.sleep(0)  # it waits for its write's own task (socket_timeout)
        await conn.disconnect(nowait=True)  # what the cluster client's aclose() does to it
        with pytest.raises(AttributeError) as raised:
            await writing
        assert redis_adapter.closed_under(raised.value), raised.value
        closed = pytest.raises(RedisConnectionError, match="closed under the command")
        with closed, outage_if_closed_under():
            raise raised.value
        # Not every AttributeError: one raised elsewhere is a bug, and stays one.
        with pytest.raises(AttributeError), outage_if_closed_under():
            _ = None.writelines  # type: ignore[attr-defined]
    finally:
        await cluster.aclose()


async def test_graphql_cores_executor_helpers_are_where_the_adapter_replaces_them() -> None:
    """taxi.api.graphql_adapter replaces graphql-core's `async_helpers` (its executor's
    own bound methods: the reference cycle) with the same methods bound weakly; a
    resolver still gathers and tracks work through them, and the executor dies with
    its last reference."""
    schema = build_schema("type Query { pair: [Int!]! }")

    async def pair(_root: Any, info: GraphQLResolveInfo[Any]) -> list[int]:
        async def one(n: int) -> int:
            return n

        info.async_helpers.track([one(0)])
        return await info.async_helpers.gather([one(1), one(2)])

    schema.query_type.fields["pair"].resolve = pair  # type: ignore[union-attr]
    theirs = Executor.build(schema, parse("{ pair }"))
    assert isinstance(theirs, Executor)
    helpers = theirs.async_helpers
    assert isinstance(helpers, GraphQLResolveInfoHelpers)
    assert (helpers.gather.__self__, helpers.track.__self__) == (theirs, theirs)  # type: ignore[attr-defined]
    assert (helpers.gather.__func__, helpers.track.__func__) == (  # type: ignore[attr-defined]
        Executor.gather_async_work,
        Executor.track_async_work,
    )

    ours = Acyclic.build(schema, parse("{ pair }"))
    assert isinstance(ours, Acyclic)
    assert not hasattr(ours.async_helpers.gather, "__self__")
    result = ours.execute_operation()
    assert inspect.isawaitable(result)
    assert await result == ExecutionResult({"pair": [1, 2]})
    dead = weakref.ref(ours)
    del ours, result
    assert dead() is None  # reference counting alone freed it: no cycle
