"""Alembic, driven from code: `taxi migrate` and the test fixtures use the same path."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from taxi.core.config import Settings

MIGRATIONS = Path(__file__).parent.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Synchronous (alembic runs its own event loop): call from a thread or the CLI."""
    command.upgrade(alembic_config(settings), revision)
