"""Fixtures: every app-level test runs on both backends.

- `embedded`: SQLite file + memory:// broadcast (the zero-setup default).
- `real`: PostgreSQL + Redis from DATABASE_URL / REDIS_URL. Without them the `real`
  variants skip locally; with CI=true a missing or unreachable service is a failure.

Each test session creates its own PostgreSQL database (migrated once) and truncates
it between tests; SQLite gets a migrated template copied per test. Redis is shared
and never assumed empty: every test uses fresh usernames and trip ids, keeps its keys
under the session's prefix, and they are deleted after it (tests/redis_keys.py). What tests
import lives in tests/backends.py, tests/live.py and tests/helpers.py, never here."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from taxi.core.cluster import startup_nodes
from taxi.core.config import Settings
from taxi.core.migrate import upgrade
from taxi.main import create_app
from tests.backends import (
    CI,
    CONNECT_TIMEOUT,
    HAS_REAL,
    PG_URL,
    REDIS_CLUSTER_URL,
    REDIS_URL,
    SESSION_PREFIX,
    Backend,
    base_settings,
    check_reachable,
    need_real,
)
from tests.live import LiveServer, serve
from tests.redis_keys import delete_keys, left_behind


@pytest.fixture(scope="session", autouse=True)
def redis_left_clean() -> Iterator[None]:
    """At the end of the session, nothing of this run is left on the shared Redis or
    Redis Cluster (tests/redis_keys.py): what is found fails the run, and is deleted."""
    yield
    if not (HAS_REAL or REDIS_CLUSTER_URL):
        return
    left = left_behind()
    for url in (REDIS_URL, REDIS_CLUSTER_URL):
        delete_keys(url)
    if left:
        shown = ", ".join(key[:80] for key in left[:10])
        pytest.fail(f"the tests left {len(left)} Redis keys under {SESSION_PREFIX}: {shown}")


@pytest.fixture(autouse=True)
def redis_cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on the real backends (or the shared cluster), its keys go, as its
    PostgreSQL rows do: the next test starts from nothing, and nothing outlives the run."""
    yield
    callspec = getattr(request.node, "callspec", None)
    names = request.fixturenames
    real = "pg_database" in names or (
        callspec is not None and callspec.params.get("backend") == "real"
    )
    if real and HAS_REAL:
        delete_keys(REDIS_URL)
    if "redis_cluster_url" in names and REDIS_CLUSTER_URL:
        delete_keys(REDIS_CLUSTER_URL)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    need_real()
    check_reachable()
    name = f"taxi_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_url = make_url(PG_URL)

    async def admin(sql: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    url = admin_url.set(database=name).render_as_string(hide_password=False)

    def create() -> None:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        upgrade(base_settings(database_url=url))

    # May be first requested from inside a running loop: do the work on a thread.
    in_thread(create)
    try:
        yield url
    finally:
        in_thread(lambda: asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


@pytest.fixture
async def pg_engine(pg_database: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's PostgreSQL database, for tests that read the rows
    server processes wrote."""
    engine = create_async_engine(pg_database)
    yield engine
    await engine.dispose()


def in_thread(fn: Callable[[], object]) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(fn).result()


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The shared Redis Cluster: skips locally without REDIS_CLUSTER_URL, fails with
    CI=true when it is unset or unreachable."""
    if not REDIS_CLUSTER_URL:
        if CI:
            pytest.fail("CI=true but REDIS_CLUSTER_URL is not set")
        pytest.skip("Redis Cluster: set REDIS_CLUSTER_URL=redis://host:port,host:port,...")
    nodes, _ = startup_nodes(REDIS_CLUSTER_URL)
    errors = []
    for node in nodes:
        try:
            socket.create_connection((node.host, node.port), timeout=CONNECT_TIMEOUT).close()
            return REDIS_CLUSTER_URL
        except OSError as exc:
            errors.append(exc)
    pytest.fail(f"Redis Cluster {REDIS_CLUSTER_URL} unreachable: {errors}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "taxi.db"
    upgrade(base_settings(database_url=f"sqlite+aiosqlite:///{path}"))
    return path


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text('TRUNCATE "user", refresh_token, trip RESTART IDENTITY CASCADE')
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["embedded", "real"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        db = tmp_path / "taxi.db"
        shutil.copy(sqlite_template, db)
        yield Backend("embedded", f"sqlite+aiosqlite:///{db}", None)
        return
    url = request.getfixturevalue("pg_database")
    await _truncate(url)
    yield Backend("real", url, REDIS_URL)


@pytest.fixture
def real_backend(backend: Backend) -> Backend:
    """For tests whose behaviour exists only on PostgreSQL/Redis (row locks, shared
    Redis state). Their embedded variants are deselected at collection."""
    assert backend.real
    return backend


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        fixtures = getattr(item, "fixturenames", ())
        embedded = callspec is not None and callspec.params.get("backend") == "embedded"
        (drop if embedded and "real_backend" in fixtures else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return base_settings(
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        media_root=tmp_path / "media",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    """A real uvicorn server in this event loop: real sockets, real close codes."""
    async with serve(settings) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to the same server process the sockets talk to."""
    async with server.http() as client:
        yield client
