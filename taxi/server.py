"""uvicorn integration for `taxi serve`: open WebSockets are closed with 1001 Going Away
when the server shuts down (SIGTERM, a deploy).

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

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_AWAY = 1001
REASON = "Server shutting down"


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
