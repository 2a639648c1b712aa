"""Faults on purpose: PostgreSQL connections killed and the PostgreSQL server stopped and
started under a running service, and SIGTERM (graceful shutdown, rolling restart).

- Which errors are an outage: asyncpg/SQLAlchemy/Redis failures of a backend become
  SERVICE_UNAVAILABLE, bugs stay INTERNAL_SERVER_ERROR (fast, no backend needed).
- Killed connections: `pg_terminate_backend` on every connection to this session's own
  database, idle and then under load, with a subscription open. In-flight statements
  may fail, only with SERVICE_UNAVAILABLE; the requests after each kill all succeed
  (checked on checkout) without a restart, and the subscription lives on.
- Server down: a private PostgreSQL (`initdb` + `postgres`, run as the `postgres` user
  when we are root) under a `taxi serve` process: first a smart shutdown held open by
  one session ("the database system is shutting down"), then stopped the hard way
  (`immediate`: nothing listens), then started again on the same port. Requests fail
  fast with HTTP 200 and SERVICE_UNAVAILABLE, /healthz answers 503 naming the database,
  a new WebSocket is closed with 1013 Try Again Later; once PostgreSQL is back the
  service recovers by itself. An open `tripUpdated` subscription STAYS OPEN through the
  outage (it reads the database only when it starts; events come through Redis) and
  receives the changes made after the recovery.
- SIGTERM: the in-flight request finishes, WebSockets are closed with 1001 Going Away,
  the process exits 0 within the graceful timeout; a rider watching a trip on a process
  being restarted reconnects to another one and gets the current state first.

The figures (requests during each outage, errors by code, time to recover) are logged
at INFO: `pytest tests/test_faults.py -o log_cli=true --log-cli-level=INFO`."""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from asyncio import StreamReader, StreamWriter
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taxi.api.schema.errors import with_codes
from taxi.core.migrate import upgrade
from taxi.transport.live.protocol import GOING_AWAY, TRY_AGAIN_LATER
from tests.backends import CI, PG_URL, REDIS_URL, Backend, base_settings, need_real
from tests.helpers import (
    ACCEPT_TRIP,
    LOG_IN,
    PASSWORD,
    REQUEST_TRIP,
    TRIP,
    TRIP_UPDATED,
    UPDATE_STATUS,
    account,
    ok,
    request_trip,
)
from tests.live import LiveServer, free_port, http_to
from tests.procs import TaxiServer, taxi_servers
from tests.streams import status_of
from tests.wait import START, WAIT, eventually
from tests.ws import LEGACY, TRANSPORT, WsClient, open_ws, session


def real(test: Any) -> Any:
    """Needs PostgreSQL and Redis, and starts servers (the classification test does not)."""
    return pytest.mark.postgres(pytest.mark.redis(pytest.mark.slow(test)))


log = logging.getLogger(__name__)

FAST = 10.0  # "fails fast": every request during an outage answers within this
RECOVERY = 30.0  # the service must be healthy again this long after PostgreSQL is
GRACEFUL = 10.0  # `taxi serve`'s timeout_graceful_shutdown
UNDER_LOAD = 8  # requests answered before a kill under load, and again after it


# -- a private PostgreSQL ----------------------------------------------------------------


def _pg_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian layout, or on PATH)."""

    def version(path: str) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", Path(path).parent.name)]

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on its own port, stoppable and restartable on the
    same port. As root, PostgreSQL refuses to run: then it runs as `postgres`."""

    def __init__(self, bin_dir: Path, log_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_user = "postgres" if os.geteuid() == 0 else None
        # As another user: its uid, its gid and none of root's supplementary groups.
        self.user: dict[str, Any] = (
            {"user": self.as_user, "group": self.as_user, "extra_groups": []}
            if self.as_user
            else {}
        )
        self.base = Path(tempfile.mkdtemp(prefix="taxi-pg-"))
        self.data = self.base / "data"
        self.log = log_dir / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://root@127.0.0.1:{self.port}/taxi"
        self.popen: subprocess.Popen[bytes] | None = None
        if self.as_user:
            shutil.chown(self.base, user=self.as_user, group=self.as_user)

    def _run(self, *argv: str) -> None:
        with self.log.open("ab") as out:
            subprocess.run(
                [str(self.bin_dir / argv[0]), *argv[1:]],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
                **self.user,
            )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "root", "--no-sync")

    def start(self) -> None:
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-k", str(self.base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **self.user)

    def begin_shutdown(self) -> None:
        """A smart shutdown (`pg_ctl stop -m smart`): no new connections, while existing
        sessions may finish."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)

    async def refuses_connections(self) -> bool:
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="root", database="postgres", timeout=2
            )
        except asyncpg.CannotConnectNowError:
            return True
        await conn.close()
        return False

    def stop(self) -> None:
        """An immediate shutdown (`pg_ctl stop -m immediate`): no goodbye to clients."""
        if self.popen is None:
            return
        popen, self.popen = self.popen, None
        if popen.poll() is None:
            popen.send_signal(signal.SIGQUIT)
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=15)

    async def wait_ready(self) -> None:
        async def answers() -> str:
            """Empty once a connection succeeds, else why not."""
            assert self.popen is not None and self.popen.poll() is None, self._tail()
            try:
                conn = await asyncpg.connect(
                    host="127.0.0.1", port=self.port, user="root", database="postgres", timeout=2
                )
            except (OSError, asyncpg.PostgresError) as exc:
                return repr(exc)
            await conn.close()
            return ""

        try:
            await eventually(answers, lambda why: not why, within=START, what="postgres answers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self._tail()}") from None

    def _tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    """A private, migrated PostgreSQL (database `taxi`) that a test may stop and start.
    Skipped locally when the server binaries are missing; with CI=true that fails."""
    need_real()  # the servers under test also need REDIS_URL
    bin_dir = _pg_bin()
    if bin_dir is None:
        if CI:
            pytest.fail("CI=true but the PostgreSQL server binaries (initdb) are missing")
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    pg = PostgresServer(bin_dir, tmp_path)
    try:
        await asyncio.to_thread(pg.init)
        await asyncio.to_thread(pg.start)
        await pg.wait_ready()
        conn = await asyncpg.connect(
            host="127.0.0.1", port=pg.port, user="root", database="postgres"
        )
        try:
            await conn.execute("CREATE DATABASE taxi")
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, base_settings(database_url=pg.url))
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(pg.base, ignore_errors=True)


# -- shared helpers ------------------------------------------------------------------------


@dataclass
class Tally:
    """Requests sent during a fault: how many, how they ended, how long they took."""

    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    slowest: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def add(self, status: int, body: dict[str, Any], elapsed: float) -> None:
        self.statuses[status] += 1
        self.slowest = max(self.slowest, elapsed)
        errors = body.get("errors") or []
        for code in {e.get("extensions", {}).get("code") for e in errors}:
            self.outcomes[str(code)] += 1
        if not errors:
            self.outcomes["ok"] += 1

    async def post(
        self, client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        start = time.monotonic()
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        body: dict[str, Any] = response.json()
        self.add(response.status_code, body, time.monotonic() - start)
        return response.status_code, body


# -- 0. which errors are an outage -------------------------------------------------------


def _wrapped(cause: BaseException, *, invalidated: bool = False) -> DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises: a DBAPIError whose `orig` (the adapted
    DB-API error, same message) was raised from asyncpg's own exception."""
    orig = Exception(str(cause))
    orig.__cause__ = cause
    return DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


OUTAGES: dict[str, Exception] = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "connect timeout": TimeoutError(),
    "pool timeout": PoolTimeout("QueuePool limit of size 10 overflow 20 reached"),
    "starting up": asyncpg.CannotConnectNowError("the database system is starting up"),
    "shutting down": _wrapped(
        asyncpg.CannotConnectNowError("the database system is shutting down")
    ),
    "terminated": _wrapped(asyncpg.AdminShutdownError("terminating connection due to admin")),
    "crash": _wrapped(asyncpg.CrashShutdownError("terminating connection because of crash")),
    "too many clients": _wrapped(asyncpg.TooManyConnectionsError("sorry, too many clients")),
    "gone mid-query": _wrapped(asyncpg.ConnectionDoesNotExistError("connection was closed")),
    "interface": InterfaceError("SELECT 1", None, Exception("connection is closed")),
    "invalidated": _wrapped(asyncpg.InterfaceError("another operation"), invalidated=True),
    "redis": RedisConnectionError("Error 111 connecting to 127.0.0.1:6379"),
}
BUGS: dict[str, Exception] = {
    "unique violation": _wrapped(asyncpg.UniqueViolationError("duplicate key value")),
    "division by zero": _wrapped(asyncpg.DivisionByZeroError("division by zero")),
    "programming": ValueError("a bug"),
}


@pytest.mark.parametrize("name", OUTAGES)
def test_backend_outages_are_service_unavailable(name: str) -> None:
    error = GraphQLError("boom", original_error=OUTAGES[name])
    [out] = with_codes([error], mask_internal=True)
    assert out.extensions == {"code": "SERVICE_UNAVAILABLE"}


@pytest.mark.parametrize("name", BUGS)
def test_bugs_are_not_outages(name: str) -> None:
    error = GraphQLError("boom", original_error=BUGS[name])
    [out] = with_codes([error], mask_internal=True)
    assert out.extensions == {"code": "INTERNAL_SERVER_ERROR"}
    assert out.message == "Internal server error."


# -- 1. connections killed -------------------------------------------------------------


async def _admin(sql: str, **params: object) -> list[Any]:
    engine = create_async_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).scalars())
    finally:
        await engine.dispose()


async def _terminate_backends(database: str) -> list[int]:
    """pg_terminate_backend on every connection to `database`; the pids terminated.

    The PostgreSQL server is shared with others: CASE makes the filter run before the
    call (in a plain WHERE the planner may push pg_terminate_backend below the join
    that supplies datname, i.e. call it on every backend)."""
    return await _admin(
        "SELECT pid FROM pg_stat_activity WHERE CASE WHEN datname = :db "
        "AND pid <> pg_backend_pid() THEN pg_terminate_backend(pid) ELSE false END",
        db=database,
    )


async def _answered(tally: Tally, count: int) -> bool:
    return tally.total >= count


async def _gone(pids: list[int]) -> bool:
    alive = await _admin("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)", pids=pids)
    return not alive


@real
async def test_killed_connections_heal_without_restart(
    real_backend: Backend, server: LiveServer
) -> None:
    database = make_url(real_backend.database_url).database
    assert database and database.startswith("taxi_test_"), database  # never anyone else's
    async with server.http(FAST + 5) as client:
        driver, rider = await asyncio.gather(account(client, "DRIVER"), account(client))
        tid = (await request_trip(client, rider))["id"]
        trip = (TRIP, {"id": tid}, rider.access)

        async def burst(tally: Tally, n: int = 12) -> None:
            await asyncio.gather(*(tally.post(client, *trip) for _ in range(n)))

        async with session(server.ws_url, rider.access, interleaved=True) as rider_ws:
            await rider_ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await rider_ws.next("trip")) == "REQUESTED"

            # Idle: the pool holds several connections, all killed between requests. The
            # next requests, as many at once as there were connections, all succeed:
            # the checkout check finds each dead connection and replaces it.
            await burst(Tally())
            idle_killed = await _terminate_backends(database)
            assert len(idle_killed) >= 2, idle_killed
            await eventually(lambda: _gone(idle_killed), within=10, what="killed backends gone")
            after_idle = Tally()
            await burst(after_idle)
            assert after_idle.outcomes == {"ok": 12}, after_idle.outcomes

            # Busy: killed under load. Statements in flight fail, as an outage only.
            during = Tally()
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    await during.post(client, *trip)

            workers = [asyncio.create_task(load()) for _ in range(4)]
            try:
                # Killed under load: requests are answered before the kill and after it.
                await eventually(lambda: _answered(during, UNDER_LOAD), what="load running")
                busy_killed = await _terminate_backends(database)
                after_kill = during.total + UNDER_LOAD
                await eventually(lambda: _answered(during, after_kill), what="load after kill")
            finally:
                stop.set()
                await asyncio.gather(*workers)
            assert during.statuses.keys() == {200}, during.statuses
            assert set(during.outcomes) <= {"ok", "SERVICE_UNAVAILABLE"}, during.outcomes
            after_busy = Tally()
            await burst(after_busy)
            assert after_busy.outcomes == {"ok": 12}, after_busy.outcomes

            # No restart: writes work, and the subscription (it holds no connection)
            # outlived both kills and still delivers.
            data = await ok(client, ACCEPT_TRIP, {"id": tid}, driver)
            assert data["acceptTrip"]["status"] == "STARTED"
            assert status_of(await rider_ws.next("trip")) == "STARTED"
            health = await client.get("/healthz")
            assert health.status_code == 200, health.text

    log.info(
        "connections killed: idle %d, then %d under load; %d requests in flight around the "
        "kill: %s (slowest %.3fs); the %d + %d requests after each kill: all ok",
        len(idle_killed),
        len(busy_killed),
        during.total,
        dict(during.outcomes),
        during.slowest,
        after_idle.total,
        after_busy.total,
    )


# -- 2. PostgreSQL down and back -------------------------------------------------------


@real
async def test_database_outage_fails_fast_and_recovers(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    async with taxi_servers(
        ["solo"], database_url=own_postgres.url, redis_url=REDIS_URL, log_dir=tmp_path
    ) as (srv,):
        http = http_to(srv.url, FAST + 5)
        try:
            await _outage_scenario(own_postgres, srv, http)
        finally:
            await http.aclose()


async def _outage_scenario(pg: PostgresServer, srv: TaxiServer, http: httpx.AsyncClient) -> None:
    driver, rider = await asyncio.gather(account(http, "DRIVER"), account(http))
    tid = (await request_trip(http, rider))["id"]
    requests: list[tuple[str, dict[str, Any], str | None]] = [
        (TRIP, {"id": tid}, rider.access),
        (ACCEPT_TRIP, {"id": tid}, driver.access),
        (LOG_IN, {"username": rider.username, "password": PASSWORD}, None),
        (REQUEST_TRIP, {"input": {"pickUpAddress": "x", "dropOffAddress": "y"}}, rider.access),
    ]

    async def unavailable(rounds: int) -> Tally:
        """Rounds of concurrent requests: each answers (no hang), fast, with HTTP 200
        and SERVICE_UNAVAILABLE; /healthz says 503 and names the database."""
        tally = Tally()
        for _round in range(rounds):
            async with asyncio.timeout(FAST):
                await asyncio.gather(*(tally.post(http, *r) for r in requests * 3))
            await asyncio.sleep(0.2)  # rounds spread over the outage: what is tested
        assert tally.statuses.keys() == {200}, tally.statuses
        assert set(tally.outcomes) == {"SERVICE_UNAVAILABLE"}, tally.outcomes
        assert tally.slowest < FAST, tally.slowest
        health = await srv.health()
        assert health.status_code == 503, health.text
        assert "database" in health.json()["failed"], health.text
        assert "broadcast" not in health.json()["failed"], health.text
        return tally

    async with session(srv.ws_url, rider.access, interleaved=True) as rider_ws:
        await rider_ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
        assert status_of(await rider_ws.next("trip")) == "REQUESTED"

        # Shutting down: a smart shutdown held open by one session refuses new
        # connections ("the database system is shutting down"), and the service's own
        # connections are gone, so every request needs a new one.
        keeper = await asyncpg.connect(
            host="127.0.0.1", port=pg.port, user="root", database="postgres"
        )
        try:
            pg.begin_shutdown()
            await eventually(
                pg.refuses_connections, within=10, what="postgres refusing connections"
            )
            await keeper.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'taxi'"
            )
            shutting_down = await unavailable(2)
        finally:
            await keeper.close()  # the last session: the shutdown completes
        await asyncio.to_thread(pg.stop)

        # Down: nothing listens on the port.
        stopped_at = time.monotonic()
        down = await unavailable(5)
        # A client connecting now is told to try again later (1013), not that its token
        # is bad (4403), and not dropped (1006): on both subprotocols.
        async with open_ws(srv.ws_url, TRANSPORT) as fresh:
            await fresh.init({"authToken": rider.access})
            await fresh.closed(TRY_AGAIN_LATER)
        async with open_ws(srv.ws_url, LEGACY) as fresh:
            await fresh.init({"authToken": rider.access})
            error = await fresh.recv()
            assert error["type"] == "connection_error", error
            assert error["payload"]["extensions"]["code"] == "SERVICE_UNAVAILABLE", error
            await fresh.closed(TRY_AGAIN_LATER)
        # A subscription started now cannot read the trip: it fails the same way, and
        # the socket (with its other subscription) stays open.
        await rider_ws.subscribe("late", TRIP_UPDATED, {"id": tid})
        late = await rider_ws.message("late", 15)
        assert late["type"] == "error", late
        assert {e["extensions"]["code"] for e in late["payload"]} == {"SERVICE_UNAVAILABLE"}
        outage = time.monotonic() - stopped_at

        # Back (after crash recovery: it was stopped the hard way): no restart of ours.
        await asyncio.to_thread(pg.start)
        started_at = time.monotonic()
        recovering = Tally()

        async def answers() -> bool:
            status, body = await recovering.post(http, TRIP, {"id": tid}, rider.access)
            return status == 200 and not body.get("errors")

        async def healthy() -> bool:
            return (await srv.health()).status_code == 200

        await eventually(answers, within=RECOVERY, what="requests succeed again", every=0.02)
        to_answer = time.monotonic() - started_at
        await eventually(healthy, within=RECOVERY, what="/healthz 200 again", every=0.02)
        to_health = time.monotonic() - started_at
        assert set(recovering.outcomes) <= {"ok", "SERVICE_UNAVAILABLE"}, recovering.outcomes
        assert recovering.statuses.keys() == {200}, recovering.statuses

        # The open subscription stayed open through the outage; changes made after the
        # recovery reach it, and nothing else came first.
        data = await ok(http, ACCEPT_TRIP, {"id": tid}, driver)
        assert data["acceptTrip"]["status"] == "STARTED"
        assert status_of(await rider_ws.next("trip")) == "STARTED"
        await ok(http, UPDATE_STATUS, {"id": tid, "status": "IN_PROGRESS"}, driver)
        assert status_of(await rider_ws.next("trip")) == "IN_PROGRESS"

    log.info(
        "database shutting down: %d requests %s (slowest %.3fs); down %.1fs: %d requests "
        "%s (slowest %.3fs); after the restart: first success in %.2fs (%d tries: %s), "
        "/healthz 200 in %.2fs",
        shutting_down.total,
        dict(shutting_down.outcomes),
        shutting_down.slowest,
        outage,
        down.total,
        dict(down.outcomes),
        down.slowest,
        to_answer,
        recovering.total,
        dict(recovering.outcomes),
        to_health,
    )


# -- 3. SIGTERM: graceful shutdown and rolling restart -----------------------------------


@real
async def test_sigterm_finishes_requests_and_closes_sockets_going_away(
    pg_database: str, tmp_path: Path
) -> None:
    async with taxi_servers(
        ["solo"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path
    ) as (srv,):
        rider, other = await asyncio.gather(account(srv.http), account(srv.http))
        tid = (await request_trip(srv.http, rider))["id"]
        async with session(srv.ws_url, rider.access, interleaved=True) as ws:
            await ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await ws.next("trip")) == "REQUESTED"

            # An in-flight request: its headers are in, its body still on its way.
            body = (
                f'{{"query": {json.dumps(REQUEST_TRIP)}, "variables": {{"input": '
                '{"pickUpAddress": "in flight 1", "dropOffAddress": "in flight 2"}}}'
            ).encode()
            half = len(body) // 2
            reader, writer = await posting(srv.url, other.access, len(body))
            writer.write(body[:half])
            await writer.drain()

            popen = srv.proc.popen
            assert popen is not None
            sent_at = time.monotonic()
            popen.send_signal(signal.SIGTERM)
            # Shutdown has begun: the socket is told to go away (and reconnect elsewhere).
            reason = await ws.closed(GOING_AWAY)
            # ... while the request in flight is still served to its end.
            writer.write(body[half:])
            async with asyncio.timeout(FAST):
                status, answer = await response_of(reader)
            writer.close()
            assert status == 200, answer
            assert not answer.get("errors"), answer
            assert answer["data"]["requestTrip"]["pickUpAddress"] == "in flight 1"
            # No new connections are accepted.
            with pytest.raises(httpx.TransportError):
                async with http_to(srv.url, 2) as fresh:
                    await fresh.get("/healthz")

            returncode = await asyncio.to_thread(popen.wait, GRACEFUL + 5)
            exited_after = time.monotonic() - sent_at
            assert returncode == 0, srv.proc.failure(f"exit status {returncode}")
            assert exited_after < GRACEFUL, exited_after
            log.info(
                "SIGTERM: socket closed %d %r; process exited 0 after %.2fs",
                GOING_AWAY,
                reason,
                exited_after,
            )


async def posting(url: str, token: str, length: int) -> tuple[StreamReader, StreamWriter]:
    """A POST to /graphql with its headers sent and its body not yet, by hand: with
    `Expect: 100-continue` the server says when it has the headers and is reading the
    body (it answers 100 Continue), so the request is in flight from then on."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    async with asyncio.timeout(WAIT):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    return reader, writer


async def response_of(reader: StreamReader) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the HTTP response `reader` receives."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length, head
    body: dict[str, Any] = json.loads(await reader.readexactly(int(length[1])))
    return int(head.split(b" ", 2)[1]), body


async def connect_first(stack: AsyncExitStack, urls: list[str], token: str) -> WsClient:
    """What a client with several endpoints does after a 1001: connect to the first that
    answers. A process that is down refuses the connection: try the next one."""
    for url in urls:
        try:
            return await stack.enter_async_context(session(url, token, interleaved=True))
        except OSError:
            continue
    raise AssertionError(f"no server answers: {urls}")


@real
async def test_rolling_restart_loses_no_committed_change(pg_database: str, tmp_path: Path) -> None:
    async with taxi_servers(
        ["a", "b"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path
    ) as (a, b):
        driver, rider = await asyncio.gather(account(a.http, "DRIVER"), account(b.http))
        tid = (await request_trip(b.http, rider))["id"]
        await ok(b.http, ACCEPT_TRIP, {"id": tid}, driver)
        urls = [a.ws_url, b.ws_url]

        async with AsyncExitStack() as stack:
            ws = await connect_first(stack, urls, rider.access)  # A
            await ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await ws.next("trip")) == "STARTED"

            # Restart A: SIGTERM; while it is going down a change is committed through B.
            restart_at = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(a.proc.stop))
            await ws.closed(GOING_AWAY)
            await ok(b.http, UPDATE_STATUS, {"id": tid, "status": "IN_PROGRESS"}, driver)
            await stopping
            assert not a.proc.running  # A is down: its port refuses connections

        # The client reconnects (A refuses, so to B) and resubscribes: the current state
        # comes first, so the change made while it was away is not lost.
        async with AsyncExitStack() as stack:
            ws = await connect_first(stack, urls, rider.access)
            await ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await ws.next("trip")) == "IN_PROGRESS"
            resumed_after = time.monotonic() - restart_at

            a.proc.start()
            await a.wait_health(200)
            a_back_after = time.monotonic() - restart_at
            # A is back: a change through the new A reaches the client on B ...
            await ok(a.http, UPDATE_STATUS, {"id": tid, "status": "COMPLETED"}, driver)
            assert status_of(await ws.next("trip")) == "COMPLETED"

        # ... and a client that connects to the new A starts from that state too.
        async with AsyncExitStack() as stack:
            ws = await connect_first(stack, urls, rider.access)
            await ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await ws.next("trip")) == "COMPLETED"

    log.info(
        "rolling restart: watcher resumed on B with the current state %.2fs after A's "
        "SIGTERM; A serving again after %.2fs",
        resumed_after,
        a_back_after,
    )
