"""A small OSRM-compatible router for the tests: a real HTTP server on a free port that
answers `/route/v1/driving/{lon},{lat};{lon},{lat}` in OSRM's response format, with the
route it was told to give, slowly, with a 500, or with a body that is not a route."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["ok", "slow", "error", "garbage"]
SLOW = 2.0  # seconds: far beyond the router timeout (300 ms)


@dataclass
class FakeOsrm:
    url: str = ""
    mode: Mode = "ok"
    meters: float = 5000.0
    seconds: float = 600.0
    paths: list[str] = field(default_factory=list)  # every request line's path, in order

    def body(self) -> tuple[int, bytes]:
        if self.mode == "error":
            return 500, b'{"code": "InvalidQuery"}'
        if self.mode == "garbage":
            return 200, b'{"code": "Ok", "routes": []}'
        route = {"distance": self.meters, "duration": self.seconds, "weight": self.seconds}
        answer = {"code": "Ok", "routes": [{**route, "legs": []}], "waypoints": []}
        return 200, json.dumps(answer).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            self.paths.append(request.split(b" ", 2)[1].decode())
            if self.mode == "slow":
                await asyncio.sleep(SLOW)  # the slow router itself, not a synchronisation
            status, body = self.body()
            head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            writer.close()


@asynccontextmanager
async def fake_osrm() -> AsyncIterator[FakeOsrm]:
    router = FakeOsrm()
    server = await asyncio.start_server(router.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    router.url = f"http://127.0.0.1:{port}"
    try:
        yield router
    finally:
        server.close()
        await server.wait_closed()
