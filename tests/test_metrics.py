"""`GET /metrics`: the values move as operations, sockets and subscriptions happen, in
one process and with `taxi serve --workers 2` (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from taxi.core import metrics
from taxi.core.config import Settings
from taxi.main import create_app
from taxi.transport.live.wire import Outbox
from tests.backends import base_settings
from tests.helpers import TRIP_REQUESTED, account, gql, request_trip
from tests.live import free_port, http_to
from tests.metrics_scrape import Samples, pids, scrape, value
from tests.procs import Proc, TaxiServer, redis_server, server_env
from tests.wait import eventually
from tests.ws import session

OPS = "taxi_graphql_operations_total"
PINGS = 12


async def until(client: httpx.AsyncClient, check: Callable[[Samples], bool]) -> Samples:
    """Scrapes until `check(samples)` holds."""
    return await eventually(lambda: scrape(client), check, what="metrics as expected")


async def test_operations_and_requests_are_counted(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    await account(client)  # SignUp + LogIn mutations
    body = await gql(client, "query Broken { nope }", status=400)
    assert body["errors"]
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(OPS, operation="SignUp", type="mutation", code="OK") == 1
    assert delta(OPS, operation="LogIn", type="mutation", code="OK") == 1
    # A name in a document that did not validate takes no label of its own (issue 19).
    failed = {"type": "query", "code": "GRAPHQL_VALIDATION_FAILED"}
    assert delta(OPS, operation="unvalidated", **failed) == 1
    assert delta(OPS, operation="Broken", **failed) == 0
    hist = "taxi_graphql_operation_duration_seconds_count"
    assert delta(hist, operation="SignUp", type="mutation") == 1
    requests = "taxi_http_requests_total"
    assert delta(requests, method="POST", route="/graphql", status="200") == 2
    assert delta(requests, method="POST", route="/graphql", status="400") == 1
    # The scrape before this one counts too.
    assert delta(requests, method="GET", route="/metrics", status="200") == 1


async def test_sockets_subscriptions_and_deliveries(settings: Settings, server: Any) -> None:
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        rider = await account(client)
        base = await scrape(client)
        sockets = value(base, "taxi_websockets_open")
        live = value(base, "taxi_subscriptions_live", field="tripRequested")
        delivered = value(base, "taxi_deliveries_total")
        async with session(server.ws_url, driver.access) as ws:
            await until(client, lambda s: value(s, "taxi_websockets_open") == sockets + 1)
            await ws.subscribe("1", TRIP_REQUESTED)
            await until(
                client,
                lambda s: value(s, "taxi_subscriptions_live", field="tripRequested") == live + 1,
            )
            trip = await request_trip(client, rider)
            await ws.next_where("1", lambda d: d["tripRequested"]["id"] == trip["id"])
            await until(client, lambda s: value(s, "taxi_deliveries_total") >= delivered + 1)
            await ws.stop("1")
            await until(
                client,
                lambda s: value(s, "taxi_subscriptions_live", field="tripRequested") == live,
            )
        after = await until(client, lambda s: value(s, "taxi_websockets_open") == sockets)
        assert value(after, OPS, operation="anonymous", type="subscription", code="OK") >= 1


async def test_backend_state_and_pool(client: httpx.AsyncClient, settings: Settings) -> None:
    await account(client)
    samples = await scrape(client)
    # Every connection the requests took went back to the pool.
    assert value(samples, "taxi_db_connections_in_use") == 0
    if settings.redis_url:
        assert value(samples, "taxi_broadcast_connected") >= 1


def test_hot_path_hooks_are_flushed_into_counters() -> None:
    before = metrics.DELIVERIES._value.get()
    for _ in range(3):
        metrics.delivered()
    metrics.flush()
    assert metrics.DELIVERIES._value.get() == before + 3


def test_operation_names_are_bounded() -> None:
    assert metrics.operation_name(None) == "anonymous"
    assert metrics.operation_name("x y") == "invalid"
    assert metrics.operation_name(True) == "invalid"
    assert metrics.operation_name(["A"]) == "invalid"
    names = {metrics.operation_name(f"Op{i}") for i in range(metrics.MAX_OPERATION_NAMES + 5)}
    assert "other" in names


def _metrics_dirs(where: Path) -> list[Path]:
    return list(where.glob("taxi-metrics-*"))


async def test_two_workers_report_together(real_backend: Any, tmp_path: Path) -> None:
    """`taxi serve --workers 2`: whichever worker answers /metrics reports both."""
    port = free_port()
    argv = [sys.executable, "-m", "taxi.cli", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = {
        **server_env(database_url=real_backend.database_url, redis_url=real_backend.redis_url),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "TMPDIR": str(tmp_path),  # where `taxi serve` makes its metrics directory
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = Proc("workers", argv, tmp_path / "server.log", env)
    server = TaxiServer("workers", proc, port)
    proc.start()
    try:
        await server.wait_health(200)
        assert len(_metrics_dirs(tmp_path)) == 1
        url = server.url
        for _ in range(PINGS):
            # A new connection each time: the workers take turns accepting them.
            async with http_to(url) as one:
                assert (await gql(one, "query Ping { __typename }"))["data"]
        ping = {"operation": "Ping", "type": "query", "code": "OK"}
        samples = await until(
            server.http,
            lambda s: (
                value(s, OPS, **ping) == PINGS and len(pids(s, "taxi_broadcast_connected")) == 2
            ),
        )
        assert (
            value(
                samples,
                "taxi_graphql_operation_duration_seconds_count",
                operation="Ping",
                type="query",
            )
            == PINGS
        )
        driver = await account(server.http, "DRIVER")
        async with session(server.ws_url, driver.access) as ws:
            await ws.subscribe("1", TRIP_REQUESTED)
            await until(
                server.http,
                lambda s: (
                    value(s, "taxi_subscriptions_live", field="tripRequested") == 1
                    and value(s, "taxi_websockets_open") == 1
                ),
            )
            rider = await account(server.http)
            trip = await request_trip(server.http, rider)
            await ws.next_where("1", lambda d: d["tripRequested"]["id"] == trip["id"])
            # The socket's worker flushes its tally within FLUSH_SECONDS.
            await until(server.http, lambda s: value(s, "taxi_deliveries_total") >= 1)
        await until(
            server.http,
            lambda s: (
                value(s, "taxi_subscriptions_live", field="tripRequested") == 0
                and value(s, "taxi_websockets_open") == 0
            ),
        )
    finally:
        await server.http.aclose()
        await asyncio.to_thread(proc.stop)
    assert proc.popen is None
    assert not _metrics_dirs(tmp_path), "the metrics directory outlived serve"


async def test_broadcast_outage_and_reconnect(pg_database: str, tmp_path: Path) -> None:
    """A private Redis killed and restarted: the backend state drops to 0 and comes
    back, and the reconnect is counted."""
    async with redis_server(tmp_path) as redis:
        app = create_app(base_settings(database_url=pg_database, redis_url=redis.url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                up = "taxi_broadcast_connected"
                base = await until(client, lambda s: value(s, up) == 1)
                reconnects = value(base, "taxi_broadcast_reconnects_total")
                await redis.crash()
                await until(client, lambda s: value(s, up) == 0)
                await redis.start()
                await until(
                    client,
                    lambda s: (
                        value(s, up) == 1
                        and value(s, "taxi_broadcast_reconnects_total") == reconnects + 1
                    ),
                )


async def test_slow_subscriber_frames_are_counted() -> None:
    """A socket that takes no frames: a newer state of the same key replaces the queued
    one (coalesced); past `maxsize` keys the oldest goes (dropped)."""

    class Full:
        open = True

        def write_text(self, data: bytes) -> bool:
            return False  # over the transport's high-water mark

        def write_texts(self, frames: Sequence[bytes]) -> bool:
            return False

        async def drain(self) -> None:
            await asyncio.Event().wait()

    async def no_send(message: Any) -> None:
        raise AssertionError(message)

    coalesced, dropped = metrics.COALESCED._value.get(), metrics.DROPPED._value.get()
    outbox = Outbox(no_send, Full(), maxsize=2)
    for key in ("a", "a", "b", "c"):
        outbox.offer("1", key, key.encode())
    metrics.flush()
    assert metrics.COALESCED._value.get() == coalesced + 1
    assert metrics.DROPPED._value.get() == dropped + 1
    await outbox.close()


def test_a_crashed_workers_live_gauges_are_dropped(tmp_path: Path) -> None:
    """Multiprocess mode: a worker killed with a socket open leaves its gauge file; the
    worker started in its place drops it (open sockets back to 0)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    crash = "from taxi.core import metrics; metrics.socket_opened(); import os; os._exit(1)"
    assert subprocess.run([sys.executable, "-c", crash], env=env, check=False).returncode == 1
    render = (
        "import asyncio, sys; from taxi.core import metrics\n"
        "async def main():\n"
        "    before = metrics._render()\n"
        "    async with metrics.flushing():\n"
        "        sys.stdout.write(before.decode() + '---' + metrics._render().decode())\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, capture_output=True, text=True
    ).stdout
    before, after = out.split("---")
    assert "taxi_websockets_open 1.0" in before
    assert "taxi_websockets_open 0.0" in after or "taxi_websockets_open " not in after
