"""uvicorn integration for `taxi serve`: the WebSocket protocol, with two additions.

1. 1001 Going Away on shutdown (SIGTERM, a deploy). On shutdown uvicorn stops
   accepting, then calls `shutdown()` on every open connection and only after that,
   once the connections are gone, runs the app's lifespan shutdown. Its WebSocket
   protocol closes sockets there with 1012 (Service Restart), so the app's own 1001
   close in the lifespan comes too late. PROTOCOL.md promises 1001, which every client
   treats as "reconnect, to another process": this class sends that, at the same point
   and in the same way uvicorn would have sent its 1012.

2. The frame-write seam (`write_text`, `drain`, `open`), offered to the app as
   `scope["extensions"]["taxi.frames"]`. A full ASGI `send` per subscriber per event
   costs 13-19 µs on the bench machine (an awaited coroutine, a message dict, a frame
   object, a join); the live path writes one text frame straight to the transport,
   header and payload in one buffer. It keeps what `send` keeps: nothing after the
   close frame, and backpressure — `write_text` refuses while the transport's buffer
   is over its high-water mark (uvicorn's `writable` flag), and the caller coalesces
   (taxi/live/wire.py). Apps that find no seam (another server) use ASGI `send`.

Used by name (`ws="taxi.server:WebSocketProtocol"`), so it also applies in each worker
process with `--workers N`."""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

GOING_AWAY = 1001
REASON = "Server shutting down"
FRAMES = "taxi.frames"  # the scope extension naming the seam (taxi/live/wire.py)

_TEXT_FIN = 0x81  # FIN bit + text opcode
_SHORT = 126  # payload lengths below this fit the first length byte
_MEDIUM = 1 << 16  # below this: 126 and a 16-bit length, else 127 and a 64-bit one


def frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked (server) final text frame of `length` bytes."""
    if length < _SHORT:
        return bytes((_TEXT_FIN, length))
    if length < _MEDIUM:
        return struct.pack("!BBH", _TEXT_FIN, 126, length)
    return struct.pack("!BBQ", _TEXT_FIN, 127, length)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][FRAMES] = self

    @property
    def open(self) -> bool:
        """Accepted, and neither closing nor gone: frames can still be written."""
        return (
            self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
            and self.conn.state is State.OPEN
        )

    def write_text(self, data: bytes) -> bool:
        """Write `data` (UTF-8 JSON) as one text frame, now; False when the socket
        cannot take it now (buffer over the high-water mark, closing, gone)."""
        if not self.writable.is_set() or not self.open:
            return False
        if self.conn.extensions:
            # A negotiated extension (per-message deflate) transforms each frame:
            # websockets builds it. `taxi serve` turns compression off.
            self.conn.send_text(data)
            self.transport.write(b"".join(self.conn.data_to_send()))
        else:
            self.transport.write(frame_header(len(data)) + data)
        return True

    async def drain(self) -> None:
        """Until the transport takes writes again (also set when the peer is gone)."""
        await self.writable.wait()

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
