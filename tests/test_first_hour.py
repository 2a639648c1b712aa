"""A new operator's first hour, as real commands: `make run` on the port and address asked
for, naming its backends (never a password) in the startup log line and on /healthz;
`taxi createsuperuser` asking twice, applying the password rules, saying what it did and
refusing a taken name in one line; a staff user that is not a driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import make_url
from sqlmodel import select

from taxi.core.config import Settings
from taxi.core.db import open_database
from taxi.domain.models import User, UserGroup
from tests.backends import Backend
from tests.helpers import PASSWORD, unique
from tests.live import free_port, http_to
from tests.procs import REPO, Proc, server_env
from tests.wait import START, eventually

# PostgreSQL here trusts local connections, so a password in the URL is accepted and
# ignored: the server runs, and its output can be searched for the password.
SECRET = "not-to-be-printed-9731"


def _createsuperuser(
    settings: Settings, stdin: str, *args: str
) -> subprocess.CompletedProcess[str]:
    # A new session: no controlling terminal, so getpass reads the answers from stdin.
    return subprocess.run(
        [sys.executable, "-m", "taxi.cli", "createsuperuser", *args],
        input=stdin,
        env=server_env(database_url=settings.database_url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )


async def test_createsuperuser(settings: Settings) -> None:
    name = unique("boss")
    differ = _createsuperuser(settings, f"{PASSWORD}\n{PASSWORD}x\n", "--username", name)
    assert differ.returncode == 1
    assert differ.stderr.strip().endswith("taxi: Password: the two entries differ.")
    common = _createsuperuser(settings, "password123\npassword123\n", "--username", name)
    assert common.returncode == 1 and "too common" in common.stderr, common.stderr

    made = _createsuperuser(settings, f"{name}\n{PASSWORD}\n{PASSWORD}\n")
    assert made.returncode == 0, made.stderr
    assert f"Created staff user {name!r}" in made.stdout
    assert "not a driver" in made.stdout

    again = _createsuperuser(settings, f"{PASSWORD}\n{PASSWORD}\n", "--username", name.upper())
    assert again.returncode == 1
    assert "Traceback" not in again.stderr and "IntegrityError" not in again.stderr
    last = again.stderr.strip().splitlines()[-1]
    assert last == f"taxi: {name.upper()!r}: A user with that username already exists."

    async with open_database(settings) as (_engine, sessions), sessions() as session:
        users = (await session.scalars(select(User).where(User.is_staff))).all()
    assert [(u.username, u.group, u.is_active) for u in users] == [(name, UserGroup.RIDER, True)]


async def test_make_run_takes_port_and_host_and_names_its_backends(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.real:
        url = make_url(backend.database_url).set(password=SECRET)
        database_url = url.render_as_string(hide_password=False)
        expected = ["database postgresql (", "broadcast redis ("]
    else:
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
        expected = [f"database sqlite ({tmp_path / 'first.db'})", "broadcast memory (in-process)"]
    env = server_env(database_url=database_url, redis_url=backend.redis_url or "")
    env["MEDIA_ROOT"] = str(tmp_path / "media")
    port = free_port()
    # -o: never reinstall the virtualenv from here (the stamp is the caller's business).
    argv = ["make", "-o", ".venv/.installed", "run", f"PORT={port}", "HOST=127.0.0.1"]
    proc = Proc("make-run", argv, tmp_path / "make-run.log", env, group=True)
    proc.start()
    try:
        async with http_to(f"http://127.0.0.1:{port}") as http:

            async def health() -> int:
                try:
                    return (await http.get("/healthz")).status_code
                except httpx.TransportError:
                    return 0  # not listening yet

            await proc.until(health, "make run never answered /healthz", lambda s: s == 200)
            body = (await http.get("/healthz")).json()
        database, broadcast = ("postgresql", "redis") if backend.real else ("sqlite", "memory")
        assert body == {"status": "ok", "backends": {"database": database, "broadcast": broadcast}}

        def logged() -> str:
            return proc.log.read_text(errors="replace")

        async def up_line() -> str:
            return next((ln for ln in logged().splitlines() if "taxi is up:" in ln), "")

        line = await eventually(up_line, within=START, what="no startup line")
        for part in expected:
            assert part in line, line
        assert SECRET not in logged()
    finally:
        proc.stop()
