"""Alembic environment: async engine, URL from Settings, SQLite-safe batch mode."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from taxi.core.config import Settings
from taxi.core.db import create_engine
from taxi.domain import models  # noqa: F401 - registers the tables on SQLModel.metadata

target_metadata = SQLModel.metadata


def _settings() -> Settings:
    settings = context.config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else Settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    settings = _settings()
    engine = create_engine(settings)
    if settings.is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _fk_off(dbapi_conn: Any, _record: Any) -> None:
            # Batch mode rebuilds a table by copy, drop and rename; with foreign keys
            # enforced, dropping `user` would cascade into its tokens and trips.
            # (After the app's own connect hook, which turns them on; outside any
            # transaction, where SQLite ignores this pragma.)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.close()

    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_settings().database_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
