"""Issue 19, the edge findings, each reproduced as the attack and refused (PROTOCOL.md:
Abuse limits, Subscriptions, Persisted documents): a socket that changes hands (#1),
junk persisted documents and long usernames filling Redis (#2), over-long operation ids
(#5), log-in floods (#6), subscriptions completed while they are set up (#8)."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from taxi.api.persisted import sha256
from taxi.core.broadcast import redis_client
from taxi.core.config import Settings
from taxi.domain import usernames
from taxi.main import create_app
from tests.backends import Backend
from tests.helpers import (
    LOG_IN,
    LOG_OUT,
    PASSWORD,
    TRIP_UPDATED,
    TRIPS_UPDATED,
    account,
    error_code,
    gql,
    request_trip,
    unique,
)
from tests.live import LiveServer
from tests.metrics_scrape import scrape, value
from tests.procs import TaxiServer, taxi_servers
from tests.redis_keys import delete_keys
from tests.wait import eventually
from tests.ws import LEGACY, PROTOCOLS, TRANSPORT, session

PING = "query Ping { __typename }"
OPS = "taxi_graphql_operations_total"


@asynccontextmanager
async def app_client(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on an app of its own, with other settings; what a CHANNEL_PREFIX
    of its own left on the shared Redis is dropped afterwards."""
    mine = settings.model_copy(update=changes)
    app = create_app(mine)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c
    finally:
        if mine.redis_url and mine.channel_prefix != settings.channel_prefix:
            delete_keys(mine.redis_url, mine.channel_prefix)


async def apq(client: httpx.AsyncClient, query: str | None, digest: str) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
    if query is not None:
        body["query"] = query
    answer: dict[str, Any] = (await client.post("/graphql", json=body)).json()
    return answer


@asynccontextmanager
async def taxi_serve(backend: Backend, tmp_path: Path) -> AsyncIterator[TaxiServer]:
    """One real `taxi serve` process on the test's backend."""
    async with taxi_servers(
        ["edge"],
        database_url=backend.database_url,
        redis_url=backend.redis_url or "",
        log_dir=tmp_path,
    ) as (server,):
        yield server


def numbered(n: int) -> str:
    """A valid document of its own (the comment makes its hash unique to this run)."""
    return f"{PING}\n# {n} {uuid.uuid4()}"


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
    assert server.app.state.live.registry.count(int(a.id)) == 0
    assert server.app.state.live.registry.count(int(b.id)) == 0


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
    """#8: `tripUpdated` then its stop 0-8 ms later, many times: afterwards the hub
    holds no channel and no pump, and no task was destroyed while pending."""
    rider = await account(http)
    trip = await request_trip(http, rider)
    hub = server.hub
    channels_before, pumps_before = set(hub._channels), len(_pumps())
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with session(server.ws_url, rider.access, protocol, interleaved=True) as ws:
        stop = "stop" if ws.legacy else "complete"
        for i in range(300):
            op = f"r{i}"
            await ws.subscribe(op, TRIP_UPDATED, {"id": trip["id"]})
            if delay := (i % 101) / 5000:
                # The race: 0-20 ms in 0.2 ms steps (the 0-8 ms, and the
                # authorizing read's time on a busy machine), not a wait.
                await asyncio.sleep(delay)
            await ws.send({"id": op, "type": stop})

        async def settled() -> tuple[set[str], int, int]:
            return set(hub._channels) - channels_before, len(hub._stopping), len(_pumps())

        await eventually(
            settled, lambda got: got == (set(), 0, pumps_before), what="hub back to empty"
        )
    gc.collect()
    await asyncio.sleep(0)  # let the loop run callbacks queued by the collection
    # SQLAlchemy leaves one of its own behind when a cancelled read terminates an
    # aiosqlite connection (a shielded graceful close it forgets; the connection is
    # force-closed anyway): not ours, and not the hub's.
    destroyed = [
        r.getMessage()
        for r in caplog.records
        if "Task was destroyed" in r.getMessage()
        and "_terminate_graceful_close" not in r.getMessage()
    ]
    assert destroyed == []
    assert "KeyError" not in caplog.text


def _pumps() -> list[Any]:
    """The hub's channel pumps still running in this loop (the server's too)."""
    return [t for t in asyncio.all_tasks() if "Hub._pump" in repr(t.get_coro())]


@pytest.mark.parametrize(
    "junk",
    [
        "x" * 60 * 1024,  # not GraphQL at all
        "query Q { noSuchField }",  # parses, does not validate
        "{ a: __typename " + "b: __typename " * 20 + "}",  # over the alias limit
    ],
)
async def test_a_persisted_document_that_does_not_validate_stores_nothing(
    settings: Settings, junk: str
) -> None:
    """#2: junk with its real hash is refused and never stored (60 KiB per request
    filled Redis 2.4 -> 27.9 MiB in 12 s)."""
    prefix = unique("pq")
    junk = f"{junk}\n# {uuid.uuid4()}"
    digest = sha256(junk)
    async with app_client(settings, channel_prefix=prefix) as client:
        assert "errors" in await apq(client, junk, digest)
        assert error_code(await apq(client, None, digest)) == "PERSISTED_QUERY_NOT_FOUND"
        if settings.redis_url:
            async with aioredis.Redis.from_url(settings.redis_url) as redis:
                assert await redis.keys(f"*{prefix}*") == []


async def test_the_persisted_store_is_bounded_oldest_evicted_first(settings: Settings) -> None:
    """#2: at most PERSISTED_MAX_DOCUMENTS, least recently used evicted first; on
    Redis the bound holds for the shared store (a second process sees the same)."""
    prefix = unique("pq")
    documents = [numbered(n) for n in range(8)]
    changes: dict[str, Any] = {"channel_prefix": prefix, "persisted_max_documents": 5}
    async with app_client(settings, **changes) as client:
        for document in documents:
            assert (await apq(client, document, sha256(document)))["data"]
        for document in documents[:3]:
            assert error_code(await apq(client, None, sha256(document))) == (
                "PERSISTED_QUERY_NOT_FOUND"
            )
        for document in documents[3:]:
            assert (await apq(client, None, sha256(document)))["data"]
        if not settings.redis_url:
            return
        # Another process (no local cache) reads the same shared store.
        async with (
            app_client(settings, **changes) as other,
            aioredis.Redis.from_url(settings.redis_url) as redis,
        ):
            assert error_code(await apq(other, None, sha256(documents[0]))) == (
                "PERSISTED_QUERY_NOT_FOUND"
            )
            assert (await apq(other, None, sha256(documents[-1])))["data"]
            tag = "{" + prefix + ":pq}"
            assert await redis.hlen(f"{tag}:texts") == 5
            assert await redis.zcard(f"{tag}:order") == 5


async def test_the_persisted_store_is_bounded_on_a_redis_cluster(
    settings: Settings, real_backend: Backend, redis_cluster_url: str
) -> None:
    """The store's script on a Redis Cluster: its keys share one hash slot."""
    prefix = unique("pq")
    documents = [numbered(n) for n in range(4)]
    changes = {
        "channel_prefix": prefix,
        "persisted_max_documents": 2,
        "redis_url": None,
        "redis_cluster_url": redis_cluster_url,
    }
    async with app_client(settings, **changes) as client:
        for document in documents:
            assert (await apq(client, document, sha256(document)))["data"]
    async with app_client(settings, **changes) as other:
        assert error_code(await apq(other, None, sha256(documents[0]))) == (
            "PERSISTED_QUERY_NOT_FOUND"
        )
        assert (await apq(other, None, sha256(documents[-1])))["data"]
    cluster = redis_client(settings.model_copy(update=changes))
    keys = ["{" + prefix + ":pq}:" + name for name in ("texts", "order", "bytes")]
    try:
        assert await cluster.hlen(keys[0]) == 2
    finally:
        await cluster.delete(*keys)  # one slot: one command
        await cluster.aclose()


async def test_a_username_over_150_characters_is_refused_before_it_is_counted(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    """#2: a 60,000-character username stored a 60 KB limiter key."""
    name = "a" * 60_000
    body = await gql(client, LOG_IN, {"username": name, "password": "x" * 12})
    assert error_code(body) == "BAD_USER_INPUT"
    if settings.redis_url:
        async with aioredis.Redis.from_url(settings.redis_url) as redis:
            key = f"{settings.channel_prefix}:login:{usernames.normalize(name)}"
            assert await redis.exists(key) == 0


async def test_log_ins_are_limited_per_address_whatever_the_usernames(
    settings: Settings,
) -> None:
    """#6: random usernames from one address: LOGIN_MAX_PER_ADDRESS, then RATE_LIMITED."""
    prefix = unique("login")
    async with app_client(settings, channel_prefix=prefix, login_max_per_address=3) as client:
        codes = [
            error_code(await gql(client, LOG_IN, {"username": unique(), "password": "x" * 12}))
            for _ in range(5)
        ]
    assert codes == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"] * 2


async def test_a_log_in_flood_checks_only_a_few_passwords_at_once(settings: Settings) -> None:
    """#6: 60 log-ins at once with real argon2id: a few are checked at a time, the rest
    wait briefly and get SERVICE_UNAVAILABLE (before: all 60 hashed at once, 64 MiB
    each); a real user's log-in afterwards works."""
    async with app_client(settings, password_hashing="default") as client:
        rider = await account(client)
        guesses = [
            gql(client, LOG_IN, {"username": unique(), "password": "x" * 12}) for _ in range(60)
        ]
        codes = [error_code(body) for body in await asyncio.gather(*guesses)]
        assert set(codes) == {"UNAUTHENTICATED", "SERVICE_UNAVAILABLE"}, codes
        assert codes.count("UNAUTHENTICATED") >= 2
        mine = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
        assert "errors" not in mine, mine


async def test_junk_operation_names_never_crowd_out_real_ones(
    backend: Backend, tmp_path: Path
) -> None:
    """#13: 210 attacker-chosen names in documents that do not validate (over HTTP and
    a WebSocket) take no label slot: a real operation seen afterwards keeps its name."""
    async with taxi_serve(backend, tmp_path) as server:
        for i in range(200):
            body = {"query": f"query Junk{i} {{ noSuchField }}", "operationName": f"Junk{i}"}
            assert (await server.http.post("/graphql", json=body)).status_code == 400
        rider = await account(server.http)
        async with session(server.ws_url, rider.access) as ws:
            for i in range(200, 210):
                await ws.send(
                    {
                        "id": str(i),
                        "type": "subscribe",
                        "payload": {
                            "query": f"query Junk{i} {{ nope }}",
                            "operationName": f"Junk{i}",
                        },
                    }
                )
                assert (await ws.error(str(i)))["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "errors" not in await gql(server.http, "query RealOne { __typename }")
        samples = await scrape(server.http)
    assert value(samples, OPS, operation="RealOne", type="query", code="OK") == 1
    labels = {dict(got).get("operation") for (name, got) in samples if name == OPS}
    assert not any(label and label.startswith("Junk") for label in labels), labels
    junk = sum(
        v
        for (name, got), v in samples.items()
        if name == OPS and ("operation", "unvalidated") in got
    )
    assert junk == 210


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_huge_documents_are_not_kept_by_the_document_caches(
    backend: Backend, tmp_path: Path
) -> None:
    """Audit (#2's class): documents are limited in tokens, not characters, and the
    parse, validation and plan caches were keyed by their text. 100 distinct valid
    documents of 300 KiB (one comment each) grew a `taxi serve` process by ~60 MiB for
    good; now they are handled uncached and the process stays where it was."""
    async with taxi_serve(backend, tmp_path) as server:
        assert server.proc.popen is not None
        pid = server.proc.popen.pid

        async def send(count: int) -> None:
            for _ in range(count):
                body = {"query": f"query Big {{ __typename }}\n# {uuid.uuid4()} {'x' * 300_000}"}
                response = await server.http.post("/graphql", json=body)
                assert response.json() == {"data": {"__typename": "Query"}}

        await send(10)  # warm-up: the first requests allocate what every request needs
        before = _rss_mib(pid)
        await send(100)
        grown = _rss_mib(pid) - before
    print(f"\n100 documents of 300 KiB: RSS {before:.1f} MiB, +{grown:.1f} MiB")
    assert grown < 12
