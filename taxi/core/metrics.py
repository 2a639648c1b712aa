"""Every Prometheus metric of the service, the hooks that move them, and `GET /metrics`.

One process (`taxi serve`, tests): prometheus-client's default registry. Several worker
processes (`taxi serve --workers N`): `taxi serve` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before the workers start; each writes its values there and whichever
worker answers `/metrics` reads them all (prometheus-client's multiprocess mode).

The per-frame and per-operation counters (deliveries, coalesced, dropped, positions,
shed, operations) are the hot path: a frame costs a few microseconds, and a Prometheus
counter increment 0.66 µs (one process) to 1.5 µs (multiprocess, a locked write to a
memory-mapped file). Those hooks only add to a plain int (75 ns); `flush()` moves the
ints into the counters at every scrape and, with several workers, every FLUSH_SECONDS (a
worker's tally is that much behind at worst)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taxi.core.overload import LOAD
from taxi.core.tasks import background

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 1.0
# Operation names come from clients: past this many distinct ones per process, "other".
# Only names of documents that validated (or were recognised) take one of these slots:
# 210 junk names in refused documents crowded real operations out as "other".
MAX_OPERATION_NAMES = 200
UNVALIDATED = "unvalidated"  # a new name in a document that was refused before it ran
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
# Requests are labelled by route, never by raw path (unbounded).
_ROUTES = ("/graphql", "/healthz", "/metrics")
_PREFIXES = ("/media", "/app", "/admin")

HTTP_REQUESTS = Counter(
    "taxi_http_requests", "HTTP requests answered.", ["method", "route", "status"]
)
OPERATIONS = Counter(
    "taxi_graphql_operations",
    "GraphQL operations, by name, type and outcome (OK or the first error code).",
    ["operation", "type", "code"],
)
OPERATION_SECONDS = Histogram(
    "taxi_graphql_operation_duration_seconds",
    "Time to run a query or mutation (subscriptions: see taxi_subscriptions_live).",
    ["operation", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SOCKETS = Gauge("taxi_websockets_open", "Open GraphQL WebSockets.", multiprocess_mode="livesum")
LIVE = Gauge(
    "taxi_subscriptions_live",
    "Running subscriptions, by root field.",
    ["field"],
    multiprocess_mode="livesum",
)
DELIVERIES = Counter("taxi_deliveries", "Subscription frames handed to sockets.")
COALESCED = Counter(
    "taxi_frames_coalesced",
    "Queued events replaced by a newer state of the same key (a slow subscriber).",
)
DROPPED = Counter(
    "taxi_frames_dropped", "Queued events dropped because a subscriber's inbox was full."
)
BROADCAST_UP = Gauge(
    "taxi_broadcast_connected",
    "1 while this process's broadcast backend (Redis pub/sub) is connected.",
    multiprocess_mode="liveall",
)
BROADCAST_RECONNECTS = Counter(
    "taxi_broadcast_reconnects", "Times the broadcast backend reconnected after an outage."
)
DB_IN_USE = Gauge(
    "taxi_db_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
WAVES = Counter("taxi_dispatch_waves", "Dispatch waves sent (offers of a trip to drivers).")
OFFERS = Counter("taxi_dispatch_offers", "Trip offers made to drivers by dispatch waves.")
POSITIONS = Counter("taxi_positions", "Driver positions reported.")
REPORTS_COALESCED = Counter(
    "taxi_positions_coalesced",
    "Position reports answered with a newer report's result of the same driver, never "
    "processed on their own (newest wins under load).",
)
SHED = Counter(
    "taxi_shed",
    "New operations turned away with SERVICE_UNAVAILABLE and retryAfter (a saturated process).",
    ["operation"],
)

# Hot-path tallies (see the module docstring).
_delivered = 0
_coalesced = 0
_dropped = 0
# Per report or operation: (counter, its labels) -> what is not in the counter yet. Bounded:
# operation names are (operation_name), types, codes and shed operations are few.
_pending: dict[tuple[Counter, tuple[str, ...]], int] = {}
_names: set[str] = set()
# OPERATION_SECONDS's children by (name, kind): `labels` checks and locks on every call,
# and every position report observes one. Bounded as the names are.
_timers: dict[tuple[str, str], Any] = {}


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# --- hooks -------------------------------------------------------------------------


def delivered() -> None:
    global _delivered
    _delivered += 1


def coalesced() -> None:
    global _coalesced
    _coalesced += 1


def dropped() -> None:
    global _dropped
    _dropped += 1


def socket_opened() -> None:
    SOCKETS.inc()


def socket_closed() -> None:
    SOCKETS.dec()


def subscription_started(field: str) -> None:
    LIVE.labels(field).inc()


def subscription_ended(field: str) -> None:
    LIVE.labels(field).dec()


def broadcast_state(*, connected: bool) -> None:
    BROADCAST_UP.set(1 if connected else 0)


def broadcast_reconnected() -> None:
    BROADCAST_RECONNECTS.inc()


def wave(*, offers: int) -> None:
    """One dispatch wave that offered a trip to `offers` drivers."""
    WAVES.inc()
    OFFERS.inc(offers)


def _tally(counter: Counter, labels: tuple[str, ...] = (), n: int = 1) -> None:
    key = (counter, labels)
    _pending[key] = _pending.get(key, 0) + n


def positions(*, stored: int, coalesced: int) -> None:
    """One batch of position reports: `stored` processed, `coalesced` superseded."""
    _tally(POSITIONS, n=stored)
    _tally(REPORTS_COALESCED, n=coalesced)


def shed(operation: str) -> None:
    _tally(SHED, (operation,))


def operation_name(name: object, *, validated: bool = True) -> str:
    """The label for `name`: a slot is taken only by a name of a validated document."""
    if not name:
        return "anonymous"
    if not isinstance(name, str):  # a client's operationName may be any JSON value
        return "invalid"
    if name in _names:
        return name
    if not _NAME.fullmatch(name):
        return "invalid"
    if not validated:
        return UNVALIDATED
    if len(_names) >= MAX_OPERATION_NAMES:
        return "other"
    _names.add(name)
    return name


def operation(*, name: object, kind: str, code: str, seconds: float | None) -> str:
    """An operation whose document validated (or was recognised) ran or was refused;
    the name's label."""
    label = operation_name(name)
    _tally(OPERATIONS, (label, kind, code))
    if seconds is not None:
        timer = _timers.get((label, kind))
        if timer is None:
            timer = _timers[label, kind] = OPERATION_SECONDS.labels(label, kind)
        timer.observe(seconds)
    return label


def refused(*, name: object, kind: str, code: str) -> None:
    """An operation refused before its document validated: its name takes no slot."""
    OPERATIONS.labels(operation_name(name, validated=False), kind, code).inc()


def instrument_engine(engine: Any) -> None:
    """Connections in use, from the pool's own checkout/checkin events. Counted per
    pool record: a request cancelled while it checked a connection out (a client that
    stopped its operation at once) got a checkin without a checkout, and the gauge
    drifted below zero."""
    from sqlalchemy import event

    pool = engine.sync_engine.pool
    out: set[int] = set()  # id() of the pool records checked out

    def checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        if id(record) not in out:
            out.add(id(record))
            DB_IN_USE.inc()

    def checkin(_dbapi: Any, record: Any) -> None:
        if id(record) in out:
            out.discard(id(record))
            DB_IN_USE.dec()

    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)


# --- collection --------------------------------------------------------------------


def flush() -> None:
    global _delivered, _coalesced, _dropped
    if _delivered:
        n, _delivered = _delivered, 0
        DELIVERIES.inc(n)
    if _coalesced:
        n, _coalesced = _coalesced, 0
        COALESCED.inc(n)
    if _dropped:
        n, _dropped = _dropped, 0
        DROPPED.inc(n)
    for key in list(_pending):
        counter, labels = key
        n = _pending.pop(key)
        if n:
            (counter.labels(*labels) if labels else counter).inc(n)


@asynccontextmanager
async def flushing() -> AsyncIterator[None]:
    """For the app's lifespan: with several workers, each flushes its tallies every
    FLUSH_SECONDS (the one answering a scrape cannot flush the others'). On the way out
    its live gauges (sockets, subscriptions, pool) are dropped from the directory."""
    if not multiprocess():
        yield
        return
    _forget_dead_workers()

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            flush()

    try:
        async with background(loop(), name="taxi-metrics-flush"):
            yield
    finally:
        flush()
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())


def _forget_dead_workers() -> None:
    """A worker that crashed left its live gauges (sockets, subscriptions, pool) in the
    directory; uvicorn starts a replacement, which drops them here."""
    from prometheus_client import multiprocess as mp

    directory = Path(os.environ[MULTIPROC_ENV])
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mp.mark_process_dead(pid)
        except PermissionError:
            continue  # alive, someone else's


def _render() -> bytes:
    flush()
    if not multiprocess():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)
    return generate_latest(registry)


async def endpoint(_request: Request) -> Response:
    # Reading every worker's files is blocking I/O: off the event loop.
    body = await run_in_threadpool(_render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _route(path: str) -> str:
    if path in _ROUTES:
        return path
    for prefix in _PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return "other"


class HttpMetricsMiddleware:
    """Counts every HTTP response by method, route and status (WebSockets: SOCKETS), and
    each request as pending work while it runs (taxi.core.overload)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an app that raised before answering
        LOAD.started()  # pending work until answered (taxi.core.overload)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            LOAD.finished()
            HTTP_REQUESTS.labels(scope["method"], _route(scope["path"]), str(status)).inc()
