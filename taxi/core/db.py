"""The async engine and session maker, opened by the app's lifespan (never at import)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import CursorResult, event, exc, text
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import UpdateBase

from taxi.core.config import Settings

SessionMaker = async_sessionmaker[AsyncSession]

# A pooled connection idle longer than this is pinged before use (seconds): a peer that
# vanished without closing the socket (a dropped NAT entry, a frozen host) is not seen
# otherwise. Under load connections are never idle that long.
IDLE_PING = 10.0


async def affected(
    session: AsyncSession | AsyncConnection,
    statement: UpdateBase,
    params: dict[str, Any] | None = None,
) -> int:
    """Runs an UPDATE or DELETE: how many rows it matched. (`execute` is typed to return
    any Result; a DML statement's is a CursorResult, the one with a rowcount.) On a
    session's connection it runs as Core: the session's objects are not brought up to
    date, which the ORM's UPDATE does at a cost larger than the statement's."""
    result = await session.execute(statement, params)
    assert isinstance(result, CursorResult)
    return result.rowcount


# Requests wait this long (seconds) for a pooled connection when all are checked out,
# then fail with SERVICE_UNAVAILABLE: bounded, never at once (PROTOCOL.md "Overload").
POOL_WAIT = 5
POOL_SIZE = 10
POOL_OVERFLOW = 20


def create_engine(
    settings: Settings, *, pool_size: int = POOL_SIZE, max_overflow: int = POOL_OVERFLOW
) -> AsyncEngine:
    """`pool_size`/`max_overflow`: PostgreSQL connections kept, and opened beyond them
    under load (the health probe keeps one of its own)."""
    # Looked up on the module at call time: OpenTelemetry's SQLAlchemy instrumentation
    # (taxi.core.tracing) traces engines by wrapping it there.
    create_async_engine = sa_asyncio.create_async_engine
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url, connect_args={"timeout": 30}, hide_parameters=True
        )
        _tune_sqlite(engine)
        return engine
    engine = create_async_engine(
        settings.database_url,
        # A statement's parameters (password hashes, tokens' ids, user input) never
        # appear in an exception's text, hence in no error message or log line.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=POOL_WAIT,
        # Bounded: a frozen database must fail requests fast (SERVICE_UNAVAILABLE), not hang
        # them; every query here is small and indexed.
        connect_args={"timeout": 5, "command_timeout": 5},
    )
    _check_on_checkout(engine)
    return engine


def _check_on_checkout(engine: AsyncEngine) -> None:
    """A connection killed by a database restart is noticed before use, not mid-request.
    `pool_pre_ping` would do it with three round trips per checkout (BEGIN, a ping,
    ROLLBACK: a third of the database work of a small read); asyncpg already knows a
    connection whose server closed it, so only a connection idle past IDLE_PING is
    pinged. A DisconnectionError in a checkout listener makes the pool replace the
    connection and check out again (SQLAlchemy's "Disconnect Handling - Pessimistic",
    custom checks)."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if dbapi_conn.driver_connection.is_closed():
            raise exc.DisconnectionError("connection closed by the server")
        # No entry: a fresh connection (the pool clears `info` when it reconnects).
        idle_since = record.info.get("checked_in")
        if idle_since is not None and time.monotonic() - idle_since > IDLE_PING:
            try:
                dialect.do_ping(dbapi_conn)
            except dialect.loaded_dbapi.Error as error:
                raise exc.DisconnectionError("ping failed") from error

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below) instead of pysqlite's lazy one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # SQLite cannot upgrade a read transaction to a write one while another writer
        # waits (it fails at once with "database is locked"); taking the write lock at
        # BEGIN makes concurrent writers queue on busy_timeout instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_maker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def read_only(engine: AsyncEngine | SessionMaker) -> AsyncIterator[AsyncConnection]:
    """A connection for reads alone (Core rows: no ORM session to set up), outside any
    transaction on PostgreSQL: each statement one round trip instead of three (BEGIN, it,
    ROLLBACK). Under READ COMMITTED each statement has its own snapshot either way; reads
    that must agree with each other belong in one statement. (SQLite's connections begin
    their own way, above.)"""
    bind = engine if isinstance(engine, AsyncEngine) else engine.kw["bind"]
    async with bind.connect() as connection:
        if bind.dialect.name != "sqlite":
            # Set on asyncpg's connection object alone (no round trip), reset at check-in.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[tuple[AsyncEngine, SessionMaker]]:
    engine = create_engine(settings)
    try:
        yield engine, create_session_maker(engine)
    finally:
        await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
