"""Fixtures: every app-level test runs on both backends.

- `embedded`: SQLite file + memory:// broadcast (the zero-setup default).
- `real`: PostgreSQL + Redis from DATABASE_URL / REDIS_URL. Without them the `real`
  variants skip locally; with CI=true a missing or unreachable service is a failure.

Each test session creates its own PostgreSQL database (migrated once) and truncates
it between tests; SQLite gets a migrated template copied per test. Redis is shared
and never assumed empty: every test uses fresh usernames and trip ids."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from taxi.cluster import startup_nodes
from taxi.config import Settings, normalize_database_url
from taxi.main import create_app
from taxi.migrate import upgrade

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = normalize_database_url(os.environ.get("DATABASE_URL", ""))
REDIS_URL = os.environ.get("REDIS_URL", "")
# A shared Redis Cluster (.ci/run starts one); only the tests that ask for it use it.
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "")
SESSION_PREFIX = f"taxi-test-{uuid.uuid4().hex[:8]}"
TEST_SIGNUP_LIMIT = 1_000_000
HAS_REAL = PG_URL.startswith("postgresql") and REDIS_URL.startswith("redis")


def _need_real() -> None:
    if not HAS_REAL:
        if CI:
            pytest.fail("CI=true but DATABASE_URL (postgres) / REDIS_URL are not set")
        pytest.skip("real backends: set DATABASE_URL=postgresql://... and REDIS_URL=redis://...")


def _check_reachable() -> None:
    for url, default in ((PG_URL, 5432), (REDIS_URL, 6379)):
        u = (
            make_url(url.replace("redis://", "redis+x://", 1))
            if url.startswith("redis")
            else make_url(url)
        )
        try:
            socket.create_connection((u.host or "127.0.0.1", u.port or default), timeout=3).close()
        except OSError as exc:
            pytest.fail(f"{url.split('@')[-1]} unreachable: {exc}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    _need_real()
    _check_reachable()
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
    for node in nodes:
        try:
            socket.create_connection((node.host, node.port), timeout=3).close()
            return REDIS_CLUSTER_URL
        except OSError as exc:
            last = exc
    pytest.fail(f"Redis Cluster {REDIS_CLUSTER_URL} unreachable: {last}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "taxi.db"
    upgrade(base_settings(database_url=f"sqlite+aiosqlite:///{path}"))
    return path


def base_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "taxi_env": "test",
        "jwt_secret": "test-secret-" + "x" * 32,
        "password_hashing": "fast",
        "redis_url": None,
        # Never from the environment: CI exports it for the cluster tests only.
        "redis_cluster_url": None,
        "database_url": "sqlite+aiosqlite:///./unused.db",
        # Its own channels: other runs on a shared Redis are invisible to this one.
        "channel_prefix": SESSION_PREFIX,
        # Tests sign many users up from one address; tests of the limit lower it.
        "signup_max_per_hour": TEST_SIGNUP_LIMIT,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None

    @property
    def real(self) -> bool:
        return self.name == "real"


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
    keep, drop = [], []
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
async def app(settings: Settings) -> AsyncIterator[object]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    ws_url: str
    app: object


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    """A real uvicorn server in this event loop: real sockets, real close codes."""
    async with serve(settings) as live:
        yield live


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[LiveServer]:
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql", app)
    finally:
        srv.should_exit = True
        await task
