"""Everything the runs need before they start: a throw-away database, the servers,
accounts and rows.

Accounts whose tokens open the subscriptions are made through the API (signUp, logIn);
bulk rows (the HTTP rider's history, the race's drivers and trips) go in with SQL, and
the race drivers' access tokens are signed with the run's JWT secret, because 100
argon2 log-ins would cost the server ~13 s of CPU and measure nothing we report."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt

from bench.net import HTTP, gql_data

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-9"
SIGN_UP = """mutation SignUp($input: SignUpInput!) { signUp(input: $input) { id } }"""
LOG_IN = """mutation LogIn($u: String!, $p: String!) {
  logIn(username: $u, password: $p) { access user { id } } }"""
REQUEST = """mutation R($input: RequestTripInput!) { requestTrip(input: $input) { id } }"""
ACCEPT = "mutation A($id: ID!) { acceptTrip(id: $id) { id status } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain_dsn(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@dataclass
class Database:
    admin_dsn: str
    name: str = field(default_factory=lambda: f"taxi_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}")

    @property
    def dsn(self) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def create(self, source: Path) -> None:
        """Creates the database and runs taxi's migrations from `source` (a checkout)."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        code = (
            "import sys; from taxi.core.config import Settings; "
            "from taxi.core.migrate import upgrade; "
            "upgrade(Settings(database_url=sys.argv[1], redis_url=None))"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            self.sqlalchemy_url,
            cwd=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"migrations failed:\n{err.decode(errors='replace')[-2000:]}")

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


# The caller's service settings never reach a benchmark's server: it gets the bench's own
# database and one Redis (a REDIS_CLUSTER_URL left in a shell, as CI sets it, would
# silently put every Redis call of the run on a cluster).
SERVICE_VARIABLES = frozenset(
    {"DATABASE_URL", "REDIS_URL", "REDIS_CLUSTER_URL", "PGDATABASE", "ALLOWED_ORIGINS"}
)


def own_environment() -> dict[str, str]:
    """This process's environment without SERVICE_VARIABLES."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}


def taxi_environment(
    db: Database, *, redis_url: str, secret: str, prefix: str, media: Path, **extra: str
) -> dict[str, str]:
    """A benchmark's taxi server: its own database, one Redis, production settings,
    channels under `prefix`; `extra`: more variables."""
    return {
        **own_environment(),
        "DATABASE_URL": db.sqlalchemy_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": secret,
        "TAXI_ENV": "production",
        "CHANNEL_PREFIX": prefix,
        "MEDIA_ROOT": str(media),
        **extra,
    }


@dataclass
class Server:
    """One uvicorn process pinned to a core; stopped by its own pid only."""

    kind: str
    core: int
    env: dict[str, str]
    log: Path
    source: Path = ROOT
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = ["taskset", "-c", str(self.core), sys.executable, "-m", "bench.server"]
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [*cmd, self.kind, str(self.port)],
                cwd=self.source,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.proc = self._spawn()
        http = HTTP(self.port)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.log}")
            try:
                status, _ = await http.request("GET", "/healthz")
                if status == 200:
                    await http.close()
                    return
            except OSError:
                http = HTTP(self.port)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.kind} server did not answer /healthz; see {self.log}")

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        for _ in range(200):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self.proc.kill()
        self.proc.wait()


@dataclass
class Account:
    id: int
    username: str
    token: str


async def account(http: HTTP, group: str) -> Account:
    username = f"bench_{group.lower()}_{uuid.uuid4().hex[:8]}"
    new = {
        "username": username,
        "firstName": "Bench",
        "lastName": group.title(),
        "password1": PASSWORD,
        "password2": PASSWORD,
        "group": group,
    }
    gql_data(await http.graphql(SIGN_UP, {"input": new}), "signUp")
    data = gql_data(await http.graphql(LOG_IN, {"u": username, "p": PASSWORD}), "logIn")
    return Account(int(data["user"]["id"]), username, data["access"])


@dataclass
class FanoutCast:
    """A started trip (its rider and driver) and a rider who requests and cancels."""

    driver: Account
    rider: Account
    requester: Account
    trip_id: str


async def fanout_cast(http: HTTP) -> FanoutCast:
    driver = await account(http, "DRIVER")
    rider = await account(http, "RIDER")
    requester = await account(http, "RIDER")
    where = {"pickUpAddress": "Bench street 1", "dropOffAddress": "Bench avenue 2"}
    trip = gql_data(await http.graphql(REQUEST, {"input": where}, rider.token), "requestTrip")
    gql_data(await http.graphql(ACCEPT, {"id": trip["id"]}, driver.token), "acceptTrip")
    return FanoutCast(driver, rider, requester, trip["id"])


def channels(source: Path, prefix: str, trip_id: str) -> tuple[str, str]:
    """(the trip's channel, the pool channel) as named on Redis by the taxi in `source`."""
    # Where events live depends on the commit measured (`--ref`): before the layers, taxi/.
    found = [source / "taxi" / "domain" / "events.py", source / "taxi" / "events.py"]
    events = next(p for p in found if p.exists()).read_text()
    if "def full_channel" in events:  # CHANNEL_PREFIX applies to every channel
        return f"{prefix}:trip:{trip_id}", f"{prefix}:pool"
    return f"taxi:trip:{trip_id}", f"{prefix}:pool"  # bench.server renames the pool


def mint_token(secret: str, user_id: int, username: str, group: str, sid: str | None = None) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "id": user_id,
        "username": username,
        "first_name": "Bench",
        "last_name": group.title(),
        "group": group,
        "photo": None,
        "sub": str(user_id),
        "iat": now,
        "exp": now + timedelta(hours=1),
        "jti": uuid.uuid4().hex,
        "token_type": "access",
    }
    if sid is not None:  # a taxi with session families (auth_session) wants one
        claims["sid"] = sid
    return jwt.encode(claims, secret, algorithm="HS256")


async def _has_sessions(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('auth_session') IS NOT NULL"))


async def _sessions(conn: Any, user_ids: list[int]) -> list[str | None]:
    """One session row per user when the schema has them (newer taxi), else None."""
    if not await _has_sessions(conn):
        return [None] * len(user_ids)
    sids = [uuid.uuid4().hex for _ in user_ids]
    await conn.executemany(
        "INSERT INTO auth_session (id, user_id, created) VALUES ($1, $2, now())",
        list(zip(sids, user_ids, strict=True)),
    )
    return list(sids)


async def _users(conn: Any, prefix: str, group: str, n: int) -> list[tuple[int, str]]:
    names = [f"{prefix}_{uuid.uuid4().hex[:8]}_{i}" for i in range(n)]
    if await _has_sessions(conn):  # newer taxi: the normalized name has its own column
        rows = await conn.fetch(
            """INSERT INTO "user" (username, username_key, first_name, last_name, "group",
                   password, is_active, is_staff, date_joined)
               SELECT u, lower(u), 'Bench', $2, $2, 'x', true, false, now()
               FROM unnest($1::text[]) u
               RETURNING id, username""",
            names,
            group,
        )
        return [(r["id"], r["username"]) for r in rows]
    rows = await conn.fetch(
        """INSERT INTO "user" (username, first_name, last_name, "group", password,
               is_active, is_staff, date_joined)
           SELECT u, 'Bench', $2, $2, 'x', true, false, now() FROM unnest($1::text[]) u
           RETURNING id, username""",
        names,
        group,
    )
    return [(r["id"], r["username"]) for r in rows]


async def seed_http(dsn: str, rider_id: int, *, own: int = 40, others: int = 2000) -> None:
    """The HTTP rider's `own` completed, rated trips with 10 drivers (each rated >= 3
    times, so `rating` is not null), among `others` trips of other riders."""
    conn = await asyncpg.connect(dsn)
    try:
        drivers = [i for i, _ in await _users(conn, "bench_hd", "driver", 10)]
        riders = [i for i, _ in await _users(conn, "bench_hr", "rider", 50)]
        now = datetime.now(UTC)
        rows = []
        for k in range(own + others):
            rider = rider_id if k < own else riders[k % len(riders)]
            created = now - timedelta(minutes=10 * k + 5)
            rows.append(
                (
                    uuid.uuid4(),
                    created,
                    created + timedelta(minutes=30),
                    f"{k} Pick-up street",
                    f"{k} Drop-off avenue",
                    "COMPLETED",
                    rider,
                    drivers[k % len(drivers)],
                    1 + k % 5,
                )
            )
        await conn.copy_records_to_table(
            "trip",
            records=rows,
            columns=[
                "id",
                "created",
                "updated",
                "pick_up_address",
                "drop_off_address",
                "status",
                "rider_id",
                "driver_id",
                "rating",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def seed_race(dsn: str, secret: str, n: int) -> tuple[list[str], list[str]]:
    """n drivers (tokens) and n REQUESTED trips of n riders."""
    conn = await asyncpg.connect(dsn)
    try:
        drivers = await _users(conn, "bench_rd", "driver", n)
        sids = await _sessions(conn, [i for i, _ in drivers])
        riders = [i for i, _ in await _users(conn, "bench_rr", "rider", n)]
        trips = [uuid.uuid4() for _ in riders]
        now = datetime.now(UTC)
        await conn.executemany(
            """INSERT INTO trip (id, created, updated, pick_up_address, drop_off_address,
                   status, rider_id)
               VALUES ($1, $2, $2, 'Race start', 'Race end', 'REQUESTED', $3)""",
            [(t, now, r) for t, r in zip(trips, riders, strict=True)],
        )
    finally:
        await conn.close()
    tokens = [
        mint_token(secret, i, name, "driver", sid)
        for (i, name), sid in zip(drivers, sids, strict=True)
    ]
    return tokens, [str(t) for t in trips]
