"""uvicorn integration for `taxi serve`: open WebSockets are closed with 1001 Going Away
when the server shuts down (SIGTERM, a deploy); HTTP requests whose headers or body
arrive too slowly, or whose headers are too large, are cut off (GuardedHttpToolsProtocol).

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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_AWAY = 1001
REASON = "Server shutting down"
# A request's headers and body must have arrived this long after its first byte (or
# after the connection opened); slower clients are disconnected (slowloris).
REQUEST_READ_TIMEOUT = 10.0
# Request headers in all (PROTOCOL.md): more gets 431 (or 400) and a closed connection.
MAX_HEADER_BYTES = 16 * 1024
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class HeadersTooLarge(Exception):
    """A complete request head over MAX_HEADER_BYTES."""


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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header size limit and a read deadline.

    uvicorn over httptools has no limit on header size, and the cost of parsing one
    grows quadratically (partial values are concatenated chunk by chunk: one 128 MiB
    header blocked the event loop 16 s). Counting the bytes of a request head as they
    arrive stops it at MAX_HEADER_BYTES plus one read
    (431 and close); the exact size is checked when the head is complete (400 and close).
    uvicorn's h11 protocol has such a limit (h11_max_incomplete_event_size) but served
    15-20 % fewer small responses and 35-60 % fewer GraphQL requests per second here;
    this guard costs about 5 %, within run-to-run noise for GraphQL requests.

    Neither has a read deadline: uvicorn's only timeout is for idle keep-alive
    connections after a response, so a client sending a byte every few seconds held a
    connection forever (slowloris). A timer starts with the connection or a request's
    first byte and is cancelled once the whole request has arrived (or the socket was
    upgraded to a WebSocket, which has its own connection_init deadline)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._receiving = True  # a request is under way (or awaited on a new connection)
        self._head_bytes: int | None = 0  # of the current head; None once it is complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._receiving:  # the first bytes of the next request
            self._receiving, self._head_bytes = True, 0
        self._arm()
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_bytes is not None and self._head_bytes > MAX_HEADER_BYTES:
            # Still no end of the head past the limit: the parser saw at most the limit
            # plus one read.
            self._refuse()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        self._head_bytes = None
        if size > MAX_HEADER_BYTES:
            # Raised inside the parser's callback: uvicorn answers 400 and closes.
            raise HeadersTooLarge(size)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def _refuse(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()

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
