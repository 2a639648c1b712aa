"""Development comfort: a signing key that survives restarts, readable logs, `.env` loading
(with a committed `.env.example` that cannot drift from the settings)."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from taxi.core.config import Settings, SettingsError
from taxi.core.logs import JsonFormatter, TextFormatter

ROOT = Path(__file__).parent.parent
ENV_NAMES = ("JWT_SECRET", "TAXI_ENV", "LOG_FORMAT", "SECRET_FILE", "TILE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no developer's .env or .taxi-secret here


def test_development_secret_survives_restarts(tmp_path: Path) -> None:
    path = tmp_path / ".taxi-secret"
    first = Settings(taxi_env="development", secret_file=path).jwt_secret
    second = Settings(taxi_env="development", secret_file=path).jwt_secret
    assert first and first == second
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first


def test_the_secret_file_is_for_development_only(tmp_path: Path) -> None:
    path = tmp_path / ".taxi-secret"
    assert Settings(taxi_env="development", jwt_secret="x" * 40, secret_file=path)
    Settings(taxi_env="test", secret_file=path)
    assert not path.exists()
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings(taxi_env="production", secret_file=path)
    assert not path.exists()


def test_an_empty_secret_file_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / ".taxi-secret"
    path.write_text("")
    with pytest.raises(SettingsError, match="delete it"):
        Settings(taxi_env="development", secret_file=path)


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("TILE_URL=http://tiles.local/{z}/{x}/{y}.png\nLOG_FORMAT=json\n")
    settings = Settings(taxi_env="test")
    assert settings.tile_url == "http://tiles.local/{z}/{x}/{y}.png"
    assert settings.json_logs
    monkeypatch.setenv("LOG_FORMAT", "text")
    assert not Settings(taxi_env="test").json_logs


def test_env_example_names_only_real_settings() -> None:
    text = (ROOT / ".env.example").read_text()
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M)
    assert len(names) >= 10
    fields = {name.upper() for name in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields


def test_log_format_follows_the_environment() -> None:
    assert not Settings(taxi_env="development", jwt_secret="x" * 40).json_logs
    assert Settings(taxi_env="production", jwt_secret="x" * 40).json_logs
    assert Settings(taxi_env="development", jwt_secret="x" * 40, log_format="json").json_logs


def test_text_lines_are_readable() -> None:
    record = logging.makeLogRecord(
        {"name": "taxi.operation", "levelname": "INFO", "msg": "operation", "operation": "Me"}
    )
    record.request_id = "0123456789abcdef"
    line = TextFormatter().format(record)
    assert "INFO    taxi.operation: operation  operation=Me  [01234567]" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert json.loads(JsonFormatter().format(record))["operation"] == "Me"


@pytest.mark.parametrize(("env", "is_json"), [("development", False), ("production", True)])
def test_the_cli_logs_text_in_development_and_json_in_production(
    tmp_path: Path, env: str, is_json: bool
) -> None:
    environ = {
        **os.environ,
        "TAXI_ENV": env,
        "JWT_SECRET": "s" * 48,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'taxi.db'}",
    }
    environ.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "taxi.cli", "migrate"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if "Running upgrade" in line]
    assert lines, done.stderr
    if is_json:
        assert json.loads(lines[0])["logger"] == "alembic.runtime.migration"
    else:
        assert re.match(
            r"\d\d:\d\d:\d\d INFO +alembic\.runtime\.migration: Running upgrade", lines[0]
        )
