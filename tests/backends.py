"""The backends a test run uses: which services the environment names, and the settings
every test starts from (fixtures built on them are in conftest.py)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from taxi.core.config import Settings, normalize_database_url

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = normalize_database_url(os.environ.get("DATABASE_URL", ""))
REDIS_URL = os.environ.get("REDIS_URL", "")
# A shared Redis Cluster (.ci/run starts one); only the tests that ask for it use it.
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "")
SESSION_PREFIX = f"taxi-test-{uuid.uuid4().hex[:8]}"
TEST_SIGNUP_LIMIT = 1_000_000
HAS_REAL = PG_URL.startswith("postgresql") and REDIS_URL.startswith("redis")
CONNECT_TIMEOUT = 3


def sub_prefix(name: str) -> str:
    """A key and channel prefix of its own for one test or server, inside this session's
    (so the session's cleanup finds its keys; tests/redis_keys.py)."""
    return f"{SESSION_PREFIX}-{name}-{uuid.uuid4().hex[:8]}"


def need_real() -> None:
    """Skips (locally) or fails (CI=true) a test that needs PostgreSQL and Redis."""
    if not HAS_REAL:
        if CI:
            pytest.fail("CI=true but DATABASE_URL (postgres) / REDIS_URL are not set")
        pytest.skip("real backends: set DATABASE_URL=postgresql://... and REDIS_URL=redis://...")


def check_reachable() -> None:
    for url, default in ((PG_URL, 5432), (REDIS_URL, 6379)):
        u = (
            make_url(url.replace("redis://", "redis+x://", 1))
            if url.startswith("redis")
            else make_url(url)
        )
        address = (u.host or "127.0.0.1", u.port or default)
        try:
            socket.create_connection(address, timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            pytest.fail(f"{url.split('@')[-1]} unreachable: {exc}")


def base_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "taxi_env": "test",
        "jwt_secret": "test-secret-" + "x" * 32,
        "password_hashing": "fast",
        "redis_url": None,
        # Never from the environment: CI exports it for the cluster tests only.
        "redis_cluster_url": None,
        "database_url": "sqlite+aiosqlite:///./unused.db",
        # Its own channels: other runs on a shared Redis are invisible to this one.
        "channel_prefix": SESSION_PREFIX,
        # Tests sign many users up and log them in from one address; tests of the
        # limits lower them.
        "signup_max_per_hour": TEST_SIGNUP_LIMIT,
        "login_max_per_address": TEST_SIGNUP_LIMIT,
        # Tests request many trips per rider; tests of the limit lower it.
        "trip_requests_per_10_min": TEST_SIGNUP_LIMIT,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None

    @property
    def real(self) -> bool:
        return self.name == "real"


@asynccontextmanager
async def empty_database(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database of its own with no tables yet, on `backend`'s server (a
    migration test takes it to an old revision first); dropped afterwards."""
    if not backend.real:
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    server = make_url(backend.database_url)
    name = f"taxi_mig_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


# Connections of this database waiting for a lock. One transaction per read: PostgreSQL
# keeps a transaction's first read of pg_stat_activity for the rest of it.
_LOCK_WAITS = """SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'"""


@dataclass
class RowLock:
    waiting: Callable[[], Awaitable[int]]  # connections waiting for a lock, read afresh
    release: Callable[[], Awaitable[None]]


@asynccontextmanager
async def trip_locked(backend: Backend, trip_id: str) -> AsyncIterator[RowLock]:
    """The trip's row held FOR UPDATE by a connection of the test's own (PostgreSQL), so
    that a server's statements on it wait, until `release()` or the block's end."""
    engine = create_async_engine(backend.database_url)
    try:
        async with engine.connect() as lock, engine.connect() as probe:
            locked = await lock.begin()
            await lock.execute(
                text("SELECT id FROM trip WHERE id = :id FOR UPDATE"), {"id": trip_id}
            )

            async def waiting() -> int:
                async with probe.begin():
                    return int((await probe.execute(text(_LOCK_WAITS))).scalar_one())

            yield RowLock(waiting, locked.rollback)
    finally:
        await engine.dispose()
