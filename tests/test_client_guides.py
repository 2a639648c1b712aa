"""The client guides in docs/clients.md cannot rot: each code block there is a file of this
repository (included verbatim between markers), and each file runs against a live server here.

Each guide logs in as a rider, watches a trip with `tripUpdated`, and must ride it through:
the access token lives 3 s, so the server closes each socket (4403) and the guide must
refresh its token and reconnect before the driver moves the trip on."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from taxi.core.config import Settings
from tests.helpers import (
    ACCEPT_TRIP,
    LOG_IN,
    PASSWORD,
    UPDATE_STATUS,
    account,
    gql,
    request_trip,
)
from tests.live import serve
from tests.node import JS_DIR, ensure_node_modules, tools

ROOT = Path(__file__).parent.parent
GUIDE_DOC = ROOT / "docs" / "clients.md"
GUIDES = {
    "graphql-ws": JS_DIR / "clients" / "graphql-ws.mjs",
    "apollo": JS_DIR / "clients" / "apollo.mjs",
    "urql": JS_DIR / "clients" / "urql.mjs",
    "gql": ROOT / "tests" / "clients" / "gql_watch.py",
}
INCLUDED = [*GUIDES.values(), JS_DIR / "clients" / "tokens.mjs"]
TOKEN_TTL = 3  # seconds: short, so that every guide meets an expired token
GUIDE_TIMEOUT = 60.0
MARKER = re.compile(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```\n<!-- /file -->", re.S)


def test_readme_blocks_are_the_files() -> None:
    blocks = dict(MARKER.findall(GUIDE_DOC.read_text(encoding="utf-8")))
    for path in INCLUDED:
        name = str(path.relative_to(ROOT))
        assert name in blocks, f"docs/clients.md has no block for {name}"
        assert blocks[name] == path.read_text(encoding="utf-8"), (
            f"docs/clients.md's {name} is stale (python scripts/readme_files.py)"
        )


class _Output:
    """The guide's output, line by line, with a wait for a condition on what came so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def until(self, done: object, what: str) -> None:
        assert callable(done)
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(GUIDE_TIMEOUT / 2):
                while not done(self.lines):
                    line = await self.proc.stdout.readline()
                    if not line:
                        break
                    self.lines.append(line.decode().rstrip())
        except TimeoutError:
            pass
        assert done(self.lines), f"guide never showed {what}:\n" + "\n".join(self.lines)


def _command(name: str) -> list[str]:
    path = GUIDES[name]
    if path.suffix == ".py":
        return [sys.executable, str(path)]
    return [tools()[0], str(path)]


@pytest.mark.parametrize("name", sorted(GUIDES))
async def test_guide_rides_a_trip_through_token_expiry(settings: Settings, name: str) -> None:
    command = _command(name)
    if command[0] != sys.executable:
        await ensure_node_modules(tools()[1])
    settings = settings.model_copy(update={"access_token_ttl": TOKEN_TTL})
    async with serve(settings) as live, live.http() as client:
        rider = await account(client)
        driver = await account(client, "DRIVER")
        trip = await request_trip(client, rider)
        env = {
            **os.environ,
            "TAXI_URL": f"{live.url}/graphql",
            "TAXI_USERNAME": rider.username,
            "TAXI_PASSWORD": PASSWORD,
            "TAXI_TRIP": trip["id"],
        }
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = _Output(proc)
        try:
            await out.until(lambda lines: "status REQUESTED" in lines, "the trip's first state")
            # The socket outlived its token: closed (4403), refreshed, connected again.
            await out.until(
                lambda lines: lines.count("connected") >= 2 and "refreshed" in lines,
                "a reconnection with a refreshed token",
            )

            async def drive(query: str, variables: dict[str, str]) -> None:
                # A connection of its own: `client`'s has been idle for about the
                # server's keep-alive timeout (5 s) by now, and a request sent as the
                # server closes it fails (httpx.ReadError, seen once in a full run).
                async with live.http() as fresh:
                    login = await gql(
                        fresh, LOG_IN, {"username": driver.username, "password": PASSWORD}
                    )
                    token = login["data"]["logIn"]["access"]
                    body = await gql(fresh, query, variables, token=token)
                assert "errors" not in body, body

            await drive(ACCEPT_TRIP, {"id": trip["id"]})
            await out.until(lambda lines: "status STARTED" in lines, "STARTED")
            await drive(UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"})
            await drive(UPDATE_STATUS, {"id": trip["id"], "status": "COMPLETED"})
            await out.until(lambda lines: "status COMPLETED" in lines, "COMPLETED")
            async with asyncio.timeout(GUIDE_TIMEOUT / 2):
                rest, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = "\n".join(out.lines) + rest.decode()
        assert proc.returncode == 0, text
