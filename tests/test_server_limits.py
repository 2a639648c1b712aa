"""Limits that hold on the server `taxi serve` runs (uvicorn with taxi.transport.server's h11
protocol), tested against real processes: header size, slow clients, the `server`
header, access logs, X-Forwarded-For, and session ends reaching sockets on another
process (PROTOCOL.md: Abuse limits, Authentication)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from taxi.transport.server import MAX_HEADER_BYTES, REQUEST_READ_TIMEOUT
from tests.backends import REDIS_URL, sub_prefix
from tests.helpers import LOG_IN, PASSWORD, SIGN_UP, TRIP_REQUESTED, account, error_code, gql
from tests.procs import TaxiServer, taxi_servers
from tests.wait import eventually
from tests.ws import session

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

# How long a cut-off may take beyond the deadline before the test calls it held.
GRACE = 10.0


@pytest.fixture
async def server(pg_database: str, tmp_path: Path) -> AsyncIterator[TaxiServer]:
    async with taxi_servers(
        ["a"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path
    ) as (one,):
        yield one


async def raw(server: TaxiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(server.url)
    return await asyncio.open_connection(url.hostname, url.port)


async def answer_or_close(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sends before it closes the connection (b"" when it just closes)."""
    data = b""
    async with asyncio.timeout(within):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while data was still in flight: closed all the same
    return data


async def test_oversized_headers_are_refused_without_stalling_others(
    server: TaxiServer,
) -> None:
    reader, writer = await raw(server)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    writer.write(head)
    # 4 MiB of one header value (the attack used 32-128 MiB), in pieces.
    piece = b"a" * 65536
    try:
        for _ in range(64):
            writer.write(piece)
            await writer.drain()
            # Meanwhile other clients are served.
        writer.write(b"\r\n\r\n")
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # refused while it was still sending: the point
    health = await server.health()
    assert health.status_code == 200
    reply = await answer_or_close(reader, within=GRACE)
    assert reply == b"" or reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:200]
    writer.close()
    # Up to the limit, headers are fine; past it, also when they arrive all at once.
    filler = "b" * (MAX_HEADER_BYTES - 1024)
    response = await server.http.get("/healthz", headers={"X-Fill": filler})
    assert response.status_code == 200
    for extra in (2048, 200_000):
        try:
            response = await server.http.get("/healthz", headers={"X-Fill": filler + "b" * extra})
        except httpx.TransportError:
            continue  # closed before it answered
        assert response.status_code in (400, 431), response.status_code


@pytest.mark.parametrize("case", ["nothing", "half-headers", "half-body"])
async def test_slow_clients_are_cut_off(server: TaxiServer, case: str) -> None:
    reader, writer = await raw(server)
    if case == "half-headers":
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    elif case == "half-body":
        body = b'{"query": "{ __typename }"}'
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
    await writer.drain()
    started = time.monotonic()
    # Other clients are served while this one dawdles.
    assert (await server.health()).status_code == 200
    reply = await answer_or_close(reader, within=REQUEST_READ_TIMEOUT + GRACE)
    assert time.monotonic() - started >= REQUEST_READ_TIMEOUT - 1  # not before its time
    assert b"__typename" not in reply
    writer.close()


async def test_server_header_access_log_and_forwarded_for(pg_database: str, tmp_path: Path) -> None:
    secret = f"hunter2-{uuid.uuid4().hex}"
    env = {"SIGNUP_MAX_PER_HOUR": "2"}
    async with taxi_servers(
        ["plain"],
        database_url=pg_database,
        redis_url=REDIS_URL,
        log_dir=tmp_path,
        extra_env={**env, "CHANNEL_PREFIX": sub_prefix("xff")},
        log_level="info",
    ) as (plain,):
        response = await plain.http.get(
            "/graphql", params={"query": "{ __typename }", "variables": f'{{"p": "{secret}"}}'}
        )
        assert response.status_code == 200
        assert "server" not in response.headers
        # X-Forwarded-For from an untrusted peer is ignored: one address, limited.
        codes = []
        for i in range(3):
            body = await sign_up_from(plain.http, f"198.51.100.{i}")
            codes.append(error_code(body) if body.get("errors") else "ok")
        assert codes == ["ok", "ok", "RATE_LIMITED"]
        log = await _log_with(plain, "GET /graphql HTTP/1.1")
        assert secret not in log and "__typename" not in log
    async with taxi_servers(
        ["trusting"],
        database_url=pg_database,
        redis_url=REDIS_URL,
        log_dir=tmp_path,
        extra_env={
            **env,
            "TRUSTED_PROXIES": "127.0.0.1",
            "CHANNEL_PREFIX": sub_prefix("xff"),
        },
    ) as (trusting,):
        for i in range(3):
            body = await sign_up_from(trusting.http, f"198.51.100.{i}")
            assert "errors" not in body, body


async def sign_up_from(client: httpx.AsyncClient, forwarded_for: str) -> dict[str, Any]:
    """A sign-up sent with `X-Forwarded-For: forwarded_for`: the response body."""
    variables = {
        "input": {
            "username": f"xff_{uuid.uuid4().hex[:10]}",
            "firstName": "F",
            "lastName": "L",
            "password1": PASSWORD,
            "password2": PASSWORD,
        }
    }
    r = await client.post(
        "/graphql",
        json={"query": SIGN_UP, "variables": variables},
        headers={"X-Forwarded-For": forwarded_for},
    )
    body: dict[str, Any] = r.json()
    return body


async def _log_with(server: TaxiServer, needle: str) -> str:
    """The server's log once a line containing `needle` was written."""

    async def log() -> str:
        return await asyncio.to_thread(server.proc.log.read_text, errors="replace")

    return await eventually(log, lambda text: needle in text, what=f"{needle!r} in the log")


async def test_log_out_on_one_process_closes_the_socket_on_another(
    pg_database: str, tmp_path: Path
) -> None:
    async with taxi_servers(
        ["a", "b"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path
    ) as (a, b):
        driver = await account(a.http, "DRIVER")
        other = await gql(a.http, LOG_IN, {"username": driver.username, "password": PASSWORD})
        async with (
            session(b.ws_url, driver.access) as ws,
            session(b.ws_url, other["data"]["logIn"]["access"]) as kept,
        ):
            await ws.subscribe("1", TRIP_REQUESTED)
            assert (
                await gql(
                    a.http, "mutation L($r: String!) { logOut(refresh: $r) }", {"r": driver.refresh}
                )
            )["data"]["logOut"] is True
            await ws.closed(4403)
            await kept.subscribe("2", "{ me { id } }")
            assert (await kept.next("2"))["me"]["id"] == driver.id
        assert error_code(await gql(b.http, "{ me { id } }", token=driver.access)) == (
            "UNAUTHENTICATED"
        )
