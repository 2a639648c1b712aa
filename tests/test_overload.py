"""Overload (PROTOCOL.md "Overload"), as clients see it over real sockets: a driver's
waiting reports answered with the newest one's result, eight operations at once per
socket and the rest in order, and a flooded `taxi serve` process that turns new
requestTrip/logIn away with SERVICE_UNAVAILABLE + retryAfter while it keeps every
request it accepted and answers /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from taxi.api.resolvers import rides as rides_resolvers
from taxi.api.resolvers import trips as trips_resolvers
from taxi.core.config import Settings
from taxi.core.db import POOL_OVERFLOW, POOL_SIZE
from taxi.core.overload import Load
from taxi.transport.live.operations import MAX_EXECUTING
from tests.backends import REDIS_URL, Backend, base_settings, sub_prefix, trip_locked
from tests.helpers import (
    CANCEL_TRIP,
    LOG_IN,
    ME,
    PASSWORD,
    REQUEST_TRIP,
    Account,
    account,
    gql,
    request_trip,
)
from tests.live import LiveServer, serve
from tests.metrics_scrape import scrape, value
from tests.procs import TaxiServer, taxi_servers
from tests.wait import eventually
from tests.ws import session

ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
UPDATE = """mutation Update($p: LocationInput!) {
  updatePosition(position: $p) { availability position { latitude longitude } } }"""
OFFLINE = "mutation { goOffline { availability } }"
STATE = "{ driverState { availability position { latitude longitude } } }"
REPORTS = 40  # one driver's burst: five times the socket's executing limit


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Own position keys: user ids restart in every test, positions are shared Redis; one
    user's many sockets."""
    return base_settings(
        **{
            **settings.model_dump(include={"database_url", "redis_url", "media_root"}),
            "channel_prefix": sub_prefix("overload"),
            "max_sockets_per_user": 100,
        }
    )


def _latitude(i: int) -> float:
    return 50 + i / 1000


def _index(latitude: float) -> int:
    return round((latitude - 50) * 1000)


async def test_a_drivers_waiting_reports_are_answered_with_the_newest(
    server: LiveServer,
) -> None:
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        where = {"latitude": _latitude(0), "longitude": 10.0}
        await gql(client, ONLINE, {"p": where}, token=driver.access)
        before = await scrape(client)
        async with session(server.ws_url, driver.access, interleaved=True) as ws:
            # One burst: the reports wait together, eight of them executing at a time.
            for i in range(REPORTS):
                await ws.subscribe(str(i), UPDATE, {"p": {**where, "latitude": _latitude(i)}})
            answered = {}
            for i in range(REPORTS):
                data = await ws.next(str(i))
                await ws.complete(str(i))
                assert data["updatePosition"]["availability"] == "AVAILABLE"
                answered[i] = _index(data["updatePosition"]["position"]["latitude"])
        # Each report's answer is its own position or a newer one's, never an older one.
        assert all(newest >= i for i, newest in answered.items()), answered
        superseded = [i for i, newest in answered.items() if newest != i]
        assert superseded, "no report was answered with a newer one's result"
        assert answered[REPORTS - 1] == REPORTS - 1
        state = await gql(client, STATE, token=driver.access)
        assert _index(state["data"]["driverState"]["position"]["latitude"]) == REPORTS - 1
        after = await scrape(client)
    # Superseded reports were never processed on their own: counted, not stored.
    coalesced = "taxi_positions_coalesced_total"
    assert value(after, coalesced) - value(before, coalesced) == len(superseded)
    stored = value(after, "taxi_positions_total") - value(before, "taxi_positions_total")
    assert stored == REPORTS - len(superseded)


async def test_a_socket_executes_eight_operations_at_once_then_the_rest_in_order(
    server: LiveServer, real_backend: Backend
) -> None:
    """Cancels of one trip wait on its row, locked here: the first eight fill the
    socket's turns, and the socket's next operation waits for one of them to end."""
    async with server.http() as client:
        rider = await account(client)
        trip = await request_trip(client, rider)
    async with _held(server, real_backend, rider.access) as (lock, ws, other):
        locked = await lock.begin()
        await lock.execute(text("SELECT id FROM trip WHERE id = :id FOR UPDATE"), trip)
        cancels = [f"cancel{i}" for i in range(MAX_EXECUTING)]
        for op in cancels[:-1]:
            await ws.subscribe(op, CANCEL_TRIP, {"id": trip["id"]})
        # Seven held: the eighth turn is free, so this one is answered meanwhile.
        await ws.subscribe("me-first", ME)
        assert (await ws.next("me-first"))["me"]["username"] == rider.username
        await ws.complete("me-first")
        await ws.subscribe(cancels[-1], CANCEL_TRIP, {"id": trip["id"]})
        await ws.subscribe("me-later", ME)  # all eight turns held: it waits
        # The server answers other sockets meanwhile (it is not stuck) ...
        await other.subscribe("me", ME)
        assert (await other.next("me"))["me"]["username"] == rider.username
        # ... and the waiting query runs only after one of the eight ended.
        results = await _released(ws, locked, cancels)
    assert {m["id"] for m in results} == {*cancels, "me-later"}, results
    won = [m["payload"] for m in results if m["id"] in cancels and m["payload"]["data"]]
    assert len(won) == 1, results  # one cancel won; the others found it canceled
    assert won[0]["data"]["cancelTrip"]["status"] == "CANCELED"
    codes = [e["extensions"]["code"] for m in results for e in m["payload"].get("errors", ())]
    assert codes == ["CONFLICT"] * (MAX_EXECUTING - 1), results


async def test_a_report_waits_for_a_turn_like_any_operation(
    server: LiveServer, real_backend: Backend
) -> None:
    """Reports are answered from their batch without a task of their own, yet take one of
    the socket's eight turns: with all eight held, a report waits until one ends."""
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        where = {"latitude": _latitude(1), "longitude": 10.0}
        await gql(client, ONLINE, {"p": where}, token=driver.access)
    async with _held(server, real_backend, driver.access) as (lock, ws, other):
        # A report answered first, so that the next ones find their strategy chosen.
        await ws.subscribe("warm", UPDATE, {"p": where})
        assert (await ws.next("warm"))["updatePosition"]["availability"] == "AVAILABLE"
        await ws.complete("warm")
        locked = await lock.begin()
        # goOffline waits on the driver's row, locked here: eight of them hold the turns.
        await lock.execute(
            text('SELECT id FROM "user" WHERE id = :id FOR UPDATE'), {"id": int(driver.id)}
        )
        holds = [f"hold{i}" for i in range(MAX_EXECUTING)]
        for op in holds:
            await ws.subscribe(op, OFFLINE)
        await ws.subscribe("report", UPDATE, {"p": {**where, "latitude": _latitude(2)}})
        # Another socket's report goes through meanwhile (the batch is not stuck) ...
        await other.subscribe("report", UPDATE, {"p": {**where, "latitude": _latitude(3)}})
        assert (await other.next("report"))["updatePosition"]["availability"] == "AVAILABLE"
        # ... and this socket's report only after one of the eight ended.
        answered = await _released(ws, locked, holds)
    assert {m["id"] for m in answered} == {*holds, "report"}
    (report,) = [m["payload"] for m in answered if m["id"] == "report"]
    # It ran after the goOfflines: the driver was offline by then.
    assert report["errors"][0]["extensions"]["code"] == "CONFLICT", report


@asynccontextmanager
async def _held(
    server: LiveServer, backend: Backend, token: str
) -> AsyncIterator[tuple[AsyncConnection, Any, Any]]:
    """A connection to lock rows with, a socket whose operations wait on them, and
    another socket of the same user."""
    engine = create_async_engine(backend.database_url)
    try:
        async with (
            engine.connect() as lock,
            session(server.ws_url, token, interleaved=True) as ws,
            session(server.ws_url, token) as other,
        ):
            yield lock, ws, other
    finally:
        await engine.dispose()


async def _released(ws: Any, locked: Any, holds: list[str]) -> list[dict[str, Any]]:
    """The lock the eight held operations wait on is released: one of them answers first,
    then everything (a `next` and a `complete` each, the waiting one included); the
    `next` messages."""
    await locked.rollback()
    first = await ws.recv()
    assert first["id"] in holds, first
    rest = [await ws.recv() for _ in range(2 * (MAX_EXECUTING + 1) - 1)]
    return [m for m in [first, *rest] if m["type"] == "next"]


# -- a flooded `taxi serve` process ----------------------------------------------------

RIDERS = 60
ESTIMATE = """query Quote($a: PointInput!, $b: PointInput!) {
  estimateFare(pickUp: $a, dropOff: $b) { id } }"""
ROUNDS = 20  # floods at most; shedding shows in the first few


def _shed(body: dict[str, Any]) -> int | None:
    """retryAfter of a shed answer (checked to be exactly that), None for data."""
    if "errors" not in body:
        return None
    (error,) = body["errors"]
    extensions = error["extensions"]
    assert extensions.keys() == {"code", "retryAfter"}, body
    assert extensions["code"] == "SERVICE_UNAVAILABLE", body
    retry = extensions["retryAfter"]
    assert isinstance(retry, int) and retry >= 1, body
    return retry


async def _patient_account(client: httpx.AsyncClient) -> Account:
    """A rider, signed up as a phone would: retried while the server sheds."""

    async def attempt() -> Account | None:
        try:
            return await account(client)
        except AssertionError as exc:
            if "SERVICE_UNAVAILABLE" in str(exc):
                return None
            raise

    found = await eventually(attempt, what="an account while the server sheds")
    assert found is not None
    return found


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_a_flooded_process_sheds_new_work_and_keeps_what_it_accepted(
    pg_database: str, tmp_path: Path
) -> None:
    # A short queue: 180 requests at once must pass it on a fast machine too (log-ins
    # from one address are soon limited, and a limited log-in costs next to nothing).
    env = {"OVERLOAD_QUEUE_SECONDS": "0.05"}
    async with taxi_servers(
        ["flooded"],
        database_url=pg_database,
        redis_url=REDIS_URL,
        log_dir=tmp_path,
        extra_env=env,
    ) as (server,):
        # Idle connections closed well before uvicorn's 5 s keep-alive ends them: a round
        # can take longer than that, and a request sent on a connection the server is
        # closing fails with ReadError (httpx's own expiry is also 5 s: a race).
        limits = httpx.Limits(max_connections=4 * RIDERS, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            riders = [await _patient_account(client) for _ in range(RIDERS)]
            before = await scrape(client)
            tally = await _flood(server, client, riders)
            after = await scrape(client)
            # Shedding ends with the flood: new work is taken again.
            late = await _patient_account(client)
            body = await eventually(
                lambda: gql(client, REQUEST_TRIP, _trip_input(), token=late.access),
                lambda b: _shed(b) is None,
                what="requestTrip taken again after the flood",
            )
    assert tally.shed["requestTrip"] >= 1, tally
    assert tally.accepted, tally
    assert tally.healthy and all(status == 200 for status in tally.healthy), tally
    for operation in tally.shed:
        shed = value(after, "taxi_shed_total", operation=operation)
        shed -= value(before, "taxi_shed_total", operation=operation)
        assert shed == tally.shed[operation], (operation, shed, tally)
    # Every accepted request committed; nothing shed did.
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            ids = [int(r.id) for r in [*riders, late]]
            rows = await conn.execute(
                text("SELECT id::text FROM trip WHERE rider_id = ANY(:ids)"), {"ids": ids}
            )
            committed = {row[0] for row in rows}
    finally:
        await engine.dispose()
    assert committed == {*tally.accepted, body["data"]["requestTrip"]["id"]}


def _trip_input() -> dict[str, Any]:
    return {"input": {"pickUpAddress": "Flood street 1", "dropOffAddress": "Calm avenue 2"}}


class Tally:
    def __init__(self, riders: list[Account]) -> None:
        self.accepted: list[str] = []  # trip ids
        self.shed = {"requestTrip": 0, "logIn": 0, "estimateFare": 0}
        self.healthy: list[int] = []

    def __repr__(self) -> str:
        return f"accepted {len(self.accepted)}, shed {self.shed}, healthz {self.healthy}"


async def _flood(server: TaxiServer, client: httpx.AsyncClient, riders: list[Account]) -> Tally:
    """Rounds of every rider's requestTrip, logIn and estimateFare, all at once, with
    /healthz asked in the middle: until some requestTrip was accepted and some shed
    (bounded). An accepted trip is canceled (never shed) so that its rider can ask
    again in the next round: how many rounds the load takes to build does not matter."""
    tally = Tally(riders)

    async def request(rider: Account) -> None:
        body = await gql(client, REQUEST_TRIP, _trip_input(), token=rider.access)
        if _shed(body) is not None:
            tally.shed["requestTrip"] += 1
            return
        trip = body["data"]["requestTrip"]["id"]
        tally.accepted.append(trip)
        canceled = await gql(client, CANCEL_TRIP, {"id": trip}, token=rider.access)
        assert canceled["data"]["cancelTrip"]["status"] == "CANCELED", canceled

    async def log_in(rider: Account) -> None:
        body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
        if _shed(body) is not None:
            tally.shed["logIn"] += 1

    async def estimate(rider: Account) -> None:
        where = {
            "a": {"latitude": 52.5, "longitude": 13.4},
            "b": {"latitude": 52.6, "longitude": 13.5},
        }
        body = await gql(client, ESTIMATE, where, token=rider.access)
        if _shed(body) is not None:
            tally.shed["estimateFare"] += 1
        else:
            assert body["data"]["estimateFare"]["id"], body

    async def health() -> None:
        tally.healthy.append((await server.health()).status_code)

    for _ in range(ROUNDS):
        if tally.shed["requestTrip"] and tally.accepted:
            break
        work = [request(r) for r in riders] + [log_in(r) for r in riders]
        work += [estimate(r) for r in riders]
        await asyncio.gather(*work, health())
    return tally


NEARBY = """query Near($near: PointInput!) {
  nearbyCars(near: $near, radiusMeters: 1000, first: 5) { distanceMeters } }"""
SOCKETS = 40  # each with its eight turns busy: 320 Redis commands at once, 100 connections


@pytest.mark.parametrize("redis", ["one Redis", "a cluster"])
async def test_operations_beyond_the_redis_pool_wait_for_a_connection(
    settings: Settings, real_backend: Backend, request: pytest.FixtureRequest, redis: str
) -> None:
    """More concurrent Redis work than pooled connections: each waits its turn (redis-py's
    default pool, and a cluster node's, raised MaxConnectionsError, answered as
    SERVICE_UNAVAILABLE)."""
    if redis == "a cluster":
        cluster = request.getfixturevalue("redis_cluster_url")
        settings = settings.model_copy(update={"redis_url": None, "redis_cluster_url": cluster})
    near = {"near": {"latitude": 10.0, "longitude": 10.0}}
    async with serve(settings) as server, AsyncExitStack() as stack:
        async with server.http() as client:
            rider = await account(client)
        sockets = [
            await stack.enter_async_context(session(server.ws_url, rider.access, interleaved=True))
            for _ in range(SOCKETS)
        ]
        for ws in sockets:
            for i in range(MAX_EXECUTING):
                await ws.subscribe(str(i), NEARBY, near)
        for ws in sockets:
            for i in range(MAX_EXECUTING):
                assert (await ws.next(str(i)))["nearbyCars"] == []
                await ws.complete(str(i))


async def test_healthz_answers_while_every_pooled_connection_is_busy(
    server: LiveServer, real_backend: Backend
) -> None:
    """Cancels of one locked trip hold every connection of the requests' pool; /healthz
    still answers 200 (its probe has a connection of its own: a busy process is not a
    dead one). Before, its ping queued behind them and answered 503 "database"."""
    pooled = POOL_SIZE + POOL_OVERFLOW
    async with server.http() as client:
        rider = await account(client)
        trip = await request_trip(client, rider)
        async with AsyncExitStack() as stack:
            lock = await stack.enter_async_context(trip_locked(real_backend, trip["id"]))
            sockets = []
            for _ in range(-(-pooled // MAX_EXECUTING)):
                ws = await stack.enter_async_context(
                    session(server.ws_url, rider.access, interleaved=True)
                )
                sockets.append(ws)
                for i in range(MAX_EXECUTING):
                    await ws.subscribe(str(i), CANCEL_TRIP, {"id": trip["id"]})
            await eventually(lock.waiting, lambda n: n >= pooled, what="the pool all busy")
            health = await client.get("/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok", health.text
            await lock.release()
            answers = [
                (await ws.message(str(i)))["payload"]
                for ws in sockets
                for i in range(MAX_EXECUTING)
            ]
    # Every cancel answered: one won, the others found the trip canceled.
    assert sum(1 for a in answers if a["data"]) == 1, answers
    codes = {e["extensions"]["code"] for a in answers for e in a.get("errors", ())}
    assert codes == {"CONFLICT"}, answers


async def test_a_saturated_process_turns_new_work_away_over_a_socket_as_over_http(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a document is prepared, a new requestTrip or estimateFare over a socket is
    turned away by the executor as its frame arrives (no task, no resolver): the same
    answer HTTP gets from the resolver's own admission, counted the same, nothing stored."""
    where = {"a": {"latitude": 52.5, "longitude": 13.4}, "b": {"latitude": 52.6, "longitude": 13.5}}
    async with server.http() as client:
        rider = await account(client, "RIDER")
        async with session(server.ws_url, rider.access) as ws:
            for op_id, document, variables in (
                ("quote", ESTIMATE, where),
                ("trip", REQUEST_TRIP, _trip_input()),
            ):
                # Prepared (and its strategy chosen) by a first run, over the socket.
                await ws.subscribe(f"{op_id}-0", document, variables)
                assert "errors" not in (await ws.message(f"{op_id}-0"))["payload"]
                await ws.complete(f"{op_id}-0")
            trips = await gql(client, "{ trips { totalCount } }", token=rider.access)
            monkeypatch.setattr(Load, "retry_after", lambda _self: 3)
            before = await scrape(client)
            over_http = [
                await gql(client, ESTIMATE, where, token=rider.access),
                await gql(client, REQUEST_TRIP, _trip_input(), token=rider.access),
            ]

            def resolver_ran(operation: str) -> None:
                raise AssertionError(f"{operation} reached its resolver")

            for resolvers in (trips_resolvers, rides_resolvers):
                monkeypatch.setattr(resolvers, "admit", resolver_ran)
            over_socket = []
            for op_id, document, variables in (
                ("quote", ESTIMATE, where),
                ("trip", REQUEST_TRIP, _trip_input()),
            ):
                await ws.subscribe(f"{op_id}-1", document, variables)
                over_socket.append((await ws.message(f"{op_id}-1"))["payload"])
                await ws.complete(f"{op_id}-1")
            after = await scrape(client)
            monkeypatch.undo()
            assert await gql(client, "{ trips { totalCount } }", token=rider.access) == trips
    assert over_socket == over_http
    assert [_shed(body) for body in over_socket] == [3, 3]
    for operation in ("estimateFare", "requestTrip"):
        shed = value(after, "taxi_shed_total", operation=operation)
        assert shed - value(before, "taxi_shed_total", operation=operation) == 2


class Clocks:
    """The process's CPU time and the monotonic clock, as `Load` reads them, advanced by
    hand: the estimate is arithmetic on the two."""

    def __init__(self) -> None:
        self.cpu, self.now = 0.0, 0.0

    def tenth(self, load: Load, *, cpu: float, answered: int) -> None:
        """A tenth of a second with `cpu` seconds spent and `answered` operations."""
        self.cpu, self.now = self.cpu + cpu, self.now + 0.1
        for _ in range(answered):
            load.started()
            load.finished()
        load.sample(0.0)


def test_a_process_whose_operations_stopped_answering_reads_as_saturated_at_once() -> None:
    """Its CPU busy and nothing answered for a second: 50 pending operations are more than
    2 s of work, whatever the cheap answers before cost; an idle process is not."""
    clocks = Clocks()
    load = Load(cpu_time=lambda: clocks.cpu, clock=lambda: clocks.now)
    for _ in range(100):
        clocks.tenth(load, cpu=0.05, answered=250)
    load.pending = 50
    assert load.retry_after() is None
    for _ in range(11):  # a second (and a tenth: the clock's sum of tenths is 0.999...)
        clocks.tenth(load, cpu=0.1, answered=0)
    assert load.retry_after() is not None

    idle = Load(cpu_time=lambda: clocks.cpu, clock=lambda: clocks.now)
    for _ in range(100):
        clocks.tenth(idle, cpu=0.0005, answered=0)
    idle.pending = 200
    assert idle.retry_after() is None
