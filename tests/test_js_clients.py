"""The real JavaScript clients against a live server: tests/js/ride.mjs walks a whole ride
with the `graphql-ws` client (driver), Apollo Client + GraphQLWsLink (rider), and the legacy
`subscriptions-transport-ws` client (the driver following the trip, legacy subprotocol).

Needs `node` and `npm` on PATH: without them the test skips locally and fails with CI=true.
`npm ci` runs first when tests/js/node_modules is missing or older than package-lock.json."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from taxi.config import Settings
from tests.backends import CI
from tests.live import serve

JS_DIR = Path(__file__).parent / "js"
NPM_CI_TIMEOUT = 300.0
RIDE_TIMEOUT = 60.0  # ride.mjs gives up by itself after RIDE_TIMEOUT_MS (20 s)


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
    message = f"JavaScript client test: {missing} not on PATH (install Node.js >= 20)"
    if CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


async def _run(*cmd: str, limit: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `cmd` in tests/js without blocking the event loop the server runs in."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=JS_DIR,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        pytest.fail(f"{' '.join(cmd)} did not finish within {limit:.0f} s:\n{text}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _installed() -> bool:
    """node_modules exists and is no older than package-lock.json."""
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


async def _ensure_node_modules(npm: str) -> None:
    if _installed():
        return
    code, out = await _run(
        npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", limit=NPM_CI_TIMEOUT
    )
    assert code == 0, f"npm ci in {JS_DIR} failed (exit {code}):\n{out}"


async def test_js_clients_ride(settings: Settings) -> None:
    node, npm = _tools()
    await _ensure_node_modules(npm)
    env = {**os.environ, "RIDE_TIMEOUT_MS": "20000"}
    # Its own position store keys: user ids restart in every test, positions are in Redis.
    settings.channel_prefix = f"js-{uuid.uuid4().hex[:10]}"
    async with serve(settings) as live:
        code, out = await _run(node, "ride.mjs", live.url, live.ws_url, limit=RIDE_TIMEOUT, env=env)
    assert code == 0, f"node ride.mjs exited with {code}:\n{out}"


async def test_js_persisted_queries(settings: Settings) -> None:
    """Apollo's persisted-query link and urql's persisted exchange, over POST and GET:
    tests/js/persisted.mjs checks what each sent, request by request."""
    node, npm = _tools()
    await _ensure_node_modules(npm)
    async with serve(settings) as live:
        code, out = await _run(node, "persisted.mjs", live.url, limit=RIDE_TIMEOUT)
    assert code == 0, f"node persisted.mjs exited with {code}:\n{out}"
    assert out.count("ok  ") == 14, out
