"""Node.js for the JavaScript client tests: node and npm on PATH (or a skip, or with
CI=true a failure), `npm ci` when tests/js/node_modules is stale, and running a command
in tests/js without blocking the event loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.backends import CI

JS_DIR = Path(__file__).parent / "js"
NPM_CI_TIMEOUT = 300.0


def tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
    message = f"JavaScript client test: {missing} not on PATH (install Node.js >= 20)"
    if CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


async def run(
    *cmd: str,
    limit: float,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[int, str]:
    """Run `cmd` in tests/js without blocking the event loop the server runs in. With
    `on_line`, each line of output is handed to it as it comes: a script asks the test
    for what only the server side can do (e.g. deactivate a user) and waits for it."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=JS_DIR,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if on_line is not None:
                await on_line(line.rstrip("\n"))
        await proc.wait()

    try:
        await asyncio.wait_for(read(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{' '.join(cmd)} did not finish within {limit:.0f} s:\n{''.join(lines)}")
    assert proc.returncode is not None
    return proc.returncode, "".join(lines)


def installed() -> bool:
    """node_modules exists and is no older than package-lock.json."""
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


async def ensure_node_modules(npm: str) -> None:
    if installed():
        return
    code, out = await run(
        npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", limit=NPM_CI_TIMEOUT
    )
    assert code == 0, f"npm ci in {JS_DIR} failed (exit {code}):\n{out}"
