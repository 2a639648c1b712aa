"""uvicorn integration for `taxi serve`: open WebSockets are closed with 1001 Going Away
when the server shuts down (SIGTERM, a deploy); HTTP requests whose headers or body
arrive too slowly are cut off (GuardedH11Protocol, at the end).

On shutdown uvicorn stops accepting, then calls `shutdown()` on every open connection
(an idle HTTP connection is closed, an in-flight request finishes) and only after that,
once the connections are gone, runs the app's lifespan shutdown. Its WebSocket protocol
closes sockets there with 1012 (Service Restart), so the app's own 1001 close in the
lifespan (`TaxiGraphQL.close_sockets`) comes too late. PROTOCOL.md promises 1001, which
every client treats as "reconnect, to another process": this protocol class sends that,
at the same point and in the same way uvicorn would have sent its 1012.

Used by name (`ws="taxi.server:GoingAwayWebSocketProtocol"`), so it also applies in each
worker process with `--workers N`."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_AWAY = 1001
REASON = "Server shutting down"
# A request's headers and body must have arrived this long after its first byte (or
# after the connection opened); slower clients are disconnected (slowloris).
REQUEST_READ_TIMEOUT = 10.0
# Request headers in all: h11 refuses more (400 and close), before parsing them.
MAX_HEADER_BYTES = 16 * 1024


class GoingAwayWebSocketProtocol(WebSocketsSansIOProtocol):
    def shutdown(self) -> None:
        if not self.handshake_complete or self.close_sent or self.disconnected:
            super().shutdown()  # a handshake in progress (500), or already closing
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        self.conn.send_close(GOING_AWAY, REASON)
        self.close_sent = True
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for reading each request.

    Why h11 and not httptools: uvicorn over httptools has no limit on header size and
    its parse cost grows quadratically (one 128 MiB header blocked the event loop 16 s);
    h11 buffers at most `h11_max_incomplete_event_size` (MAX_HEADER_BYTES) of an
    unfinished head. Neither has a read deadline: uvicorn's only timeout is for idle
    keep-alive connections after a response, so a client sending a byte every few
    seconds held a connection forever. Here a timer starts with the connection or a
    request's first byte and is cancelled once h11 has the whole request (or the socket
    was upgraded to a WebSocket, which has its own init deadline)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm()  # a request under way (a no-op if one is armed already)
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # all of it arrived (DONE), or the connection is ending

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle between requests: uvicorn's keep-alive timeout takes over.
        if self.conn.their_state is h11.IDLE:
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(REQUEST_READ_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.info("request not received within %ss: closed", REQUEST_READ_TIMEOUT)
            self.transport.close()
