"""Live servers for real-socket tests: an in-process uvicorn (`serve`), free ports, and
the one HTTP client every test uses to talk to a live server (in-process or `taxi
serve`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from taxi.core.config import Settings
from taxi.main import create_app
from taxi.transport.live.hub import Hub, Record
from taxi.transport.server import WEBSOCKET
from tests.wait import START, WAIT, eventually

# What `taxi serve` runs: the frame-write seam of taxi/transport/server.py.
SEAM = WEBSOCKET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_to(url: str, timeout: float = WAIT) -> httpx.AsyncClient:
    """An HTTP client to the live server at `url` (use it as `async with`)."""
    return httpx.AsyncClient(base_url=url, timeout=timeout)


@dataclass
class LiveServer:
    url: str
    ws_url: str
    app: Starlette
    server: uvicorn.Server

    def shut_down(self) -> None:
        """Begin uvicorn's graceful shutdown, as SIGTERM would (the context still waits)."""
        self.server.should_exit = True

    def http(self, timeout: float = WAIT) -> httpx.AsyncClient:
        return http_to(self.url, timeout)

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.live.hub
        return hub


async def watching(app: Starlette, channel: str, count: int = 1) -> None:
    """Until `count` local subscriptions on `channel` are live: registered, and past
    their first state (read and sent, or nothing to send), so that what the test
    publishes next reaches each one once, as a change. Registered alone is not enough:
    a change landing before the first read came twice, in the state and as itself.
    (Polling: the hub has no event for "someone subscribed", nor should it.)"""
    hub: Hub = app.state.live.hub

    async def live() -> int:
        ch = hub._channels.get(channel)  # the hub's own view; watchers() counts held ones
        records = () if ch is None else ch.records
        return sum(1 for r in records if isinstance(r, Record) and r.held is None)

    await eventually(live, lambda n: n >= count, what=f"{count} watching {channel}")


@asynccontextmanager
async def serve(
    settings: Settings, *, ws: str = SEAM, http: str = "auto", ping: float = 20.0
) -> AsyncIterator[LiveServer]:
    """A real uvicorn server in this event loop: real sockets, real close codes. `ws` and
    `http` name uvicorn's protocols (taxi.transport.server's are what `taxi serve` runs);
    `ping`: its WebSocket keep-alive interval and pong timeout (uvicorn's default 20 s)."""
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        ws=ws,
        ws_ping_interval=ping,
        ws_ping_timeout=ping,
        http=http,
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # why it could not start
        return srv.started

    await eventually(started, within=START, what="uvicorn started")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql", app, srv)
    finally:
        srv.should_exit = True
        await task
