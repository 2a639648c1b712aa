"""The WebSocket side of /graphql, as an ASGI app: the handshake (origin, subprotocol),
one `Socket` per connection, and 1001 Going Away for every open socket on shutdown.
HTTP is taxi/transport/http.py; Starlette routes by scope type."""

from __future__ import annotations

import logging
from contextlib import suppress

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from strawberry.http.websocket_origin import is_same_origin, normalize_origin

from taxi.api.context import Context, Services
from taxi.api.executor import Executor
from taxi.core import metrics
from taxi.core.config import Settings
from taxi.transport.live import protocol as p
from taxi.transport.live.hub import Hub
from taxi.transport.live.registry import SocketRegistry
from taxi.transport.live.socket import Socket
from taxi.transport.live.wire import FRAMES, Outbox

log = logging.getLogger("taxi.transport.live")


class LiveEndpoint:
    # This process's fan-out and signed-in sockets, from the app's lifespan (`start`).
    hub: Hub
    registry: SocketRegistry

    def __init__(self, executor: Executor, *, settings: Settings) -> None:
        self.settings = settings
        self.executor = executor  # the one HTTP uses too
        self.origins = {o for o in map(normalize_origin, settings.origins) if o}
        self.any_origin = "*" in settings.origins
        self.sockets: set[Socket] = set()

    def start(self, *, hub: Hub, registry: SocketRegistry) -> None:
        self.hub = hub
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        dialect = p.pick(scope.get("subprotocols") or [])
        conn = HTTPConnection(scope)
        if dialect is None or not self._origin_allowed(conn):
            # Refused before accepting: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": p.NOT_ACCEPTABLE})
            return
        services: Services = scope["app"].state.services
        seam = scope.get("extensions", {}).get(FRAMES)
        outbox = Outbox(send, seam, maxsize=self.hub.maxsize)
        context = Context(services=services, request=conn)
        socket = Socket(
            context,
            send,
            outbox,
            dialect,
            executor=self.executor,
            hub=self.hub,
            registry=self.registry,
        )
        if (listen := getattr(seam, "listen", None)) is not None:
            listen(socket.heard)  # the receive seam (taxi/transport/server.py)
        self.sockets.add(socket)
        metrics.socket_opened()
        try:
            await socket.serve(receive)
        finally:
            metrics.socket_closed()
            self.sockets.discard(socket)

    def _origin_allowed(self, conn: HTTPConnection) -> bool:
        """Cross-site WebSocket hijacking: a page elsewhere may not use the visitor's
        browser to open a socket, unless its origin is allowed (as for CORS)."""
        origin = conn.headers.get("origin")
        if origin is None or self.any_origin:
            return True  # not a browser: no ambient credentials to abuse
        host = conn.headers.get("host")
        if conn.headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, host):
            return True
        if normalize_origin(origin) in self.origins:
            return True
        log.warning("refused a WebSocket from origin %r to host %r", origin, host)
        return False

    async def close_sockets(self) -> None:
        """On shutdown: 1001 Going Away, so clients reconnect to another process."""
        for socket in list(self.sockets):
            with suppress(OSError, RuntimeError):
                await socket.close(p.GOING_AWAY, p.SHUTDOWN_REASON)
