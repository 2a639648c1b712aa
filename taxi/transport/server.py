"""The uvicorn adapter: the protocols `taxi serve` runs (used by name, so they also apply in
each worker process with `--workers N`). Every use of uvicorn's undocumented internals is in
this module, named in `INTERNALS` (tests/test_adapters.py fails when one moves; uvicorn has
an upper bound in pyproject.toml):

- `WebSocketProtocol` (`ws="taxi.transport.server:WebSocketProtocol"`): uvicorn's sans-I/O WebSocket
  protocol plus two things.
  1. 1001 Going Away on shutdown (SIGTERM, a deploy). On shutdown uvicorn stops
     accepting, then calls `shutdown()` on every open connection and only after that,
     once the connections are gone, runs the app's lifespan shutdown. Its WebSocket
     protocol closes sockets there with 1012 (Service Restart), so the app's own 1001
     close in the lifespan comes too late. PROTOCOL.md promises 1001, which every client
     treats as "reconnect, to another process": this class sends that, at the same point
     and in the same way uvicorn would have sent its 1012.
  2. The frame-write seam (`write_text`, `write_texts`, `drain`, `open`), offered to the app as
     `scope["extensions"]["taxi.frames"]`. A full ASGI `send` per subscriber per event
     costs 13-19 µs on the bench machine (an awaited coroutine, a message dict, a frame
     object, a join); the live path writes one text frame straight to the transport,
     header and payload in one buffer. It keeps what `send` keeps: nothing after the
     close frame, and backpressure — `write_text` refuses while the transport's buffer
     is over its high-water mark (uvicorn's `writable` flag), and the caller coalesces
     (taxi/transport/live/wire.py). Apps that find no seam (another server) use ASGI `send`.
  3. The receive seam (`listen`): a text message goes straight to the app's listener, in
     the protocol's own callback, when the app's receive loop is idle. Through ASGI each
     message is a queued dict, a woken task, a paused and resumed read, and a future and
     coroutines that every socket then holds until its next message, seconds later: what
     the collector walked (10 % of a rush-hour server's CPU). A listener that declines a
     message (it returns False: not one it handles at once, or its loop is busy) leaves
     it to ASGI `receive`, in order.
  4. No keep-alive ping to a socket that sent a message within the ping interval: its
     peer is evidently there. uvicorn pings every socket every 20 s whatever it does,
     and at rush hour each ping and its pong (a write, a read, a parse) cost ~2 % of the
     CPU on sockets that report every few seconds. A silent socket is pinged as before,
     and closed when its pong does not come.
  5. Text frames split here (`data_received`): websockets' parser keeps, per socket, a
     generator, the last Frame and a buffer alive between two messages (seconds apart,
     so the collector walks them: its largest cost at rush hour), and runs a dozen
     generator steps per frame. While its parser waits at a frame's start, complete
     masked single-frame text messages of a 7- or 16-bit length within the size limit
     are unmasked (websockets' own C `apply_mask`) and decoded here; the first frame of
     any other kind (control, binary, fragmented, too large, bad UTF-8) and everything
     after it go to websockets, which then owns the stream until its parser waits at a
     frame's start again. Reads websockets' `parser`, `reader`, `current_size`,
     `max_message_size` (WEBSOCKETS_INTERNALS, tests/test_adapters.py).
  6. Keep-alive pings spread out: a socket is pinged one interval after its last message
     (4.), so sockets opened together (a benchmark's setup, a city's riders reconnecting
     after a deploy: each sends its connection_init at once) were pinged together for
     ever. At rush hour ~3,700 quiet riders' pings and pongs came in bursts every 20 s and
     held the loop for 100-200 ms (reports' p99 in those seconds). A ping put off comes a
     random part of half an interval later: as many pings, spread over ten seconds; a
     silent peer is pinged within 1.5 intervals of its last message.
  7. When the connection is lost, the seams' references back to the app (the listener
     of 3., this protocol in its scope's extensions for 2.) are dropped: they closed
     reference cycles through the app's socket objects, ~80 objects a closed socket left
     for the collector to find (taxi/core/gcpolicy.py), freed by reference counting now.
- `GuardedHttpToolsProtocol` (`http=...`): HTTP requests whose headers or body arrive too
  slowly, or whose headers are too large, are cut off; a connection upgraded to a
  WebSocket leaves no reference cycle behind (its parser is dropped, as uvicorn does
  when a connection is lost)."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:  # websockets' C unmasking, as websockets.frames picks it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without its C extension
    from websockets.utils import apply_mask

from taxi.transport.live.protocol import GOING_AWAY, SHUTDOWN_REASON
from taxi.transport.live.wire import FRAMES

# What `taxi serve`, the tests' servers and the benchmarks' pass to uvicorn (by name).
WEBSOCKET = "taxi.transport.server:WebSocketProtocol"
HTTP = "taxi.transport.server:GuardedHttpToolsProtocol"
# uvicorn's undocumented names used below, per base class: attributes and methods of
# its protocol objects (their values are set per connection, so they are checked on an
# instance built with a real Config).
INTERNALS: dict[type, tuple[str, ...]] = {
    WebSocketsSansIOProtocol: (
        "handle_connect",
        "scope",
        "handshake_complete",
        "initial_response",
        "close_sent",
        "disconnected",
        "conn",
        "writable",
        "transport",
        "queue",
        "shutdown",
        "frames",
        "curr_msg_data_type",
        "send_receive_event_to_app",
        "send_keepalive_ping",
        "schedule_ping",
        "ping_interval",
        "ping_timer",
        "loop",
    ),
    HttpToolsProtocol: (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_headers_complete",
        "on_message_complete",
        "handle_websocket_upgrade",
        "parser",
        "url",
        "headers",
        "transport",
        "loop",
        "logger",
    ),
}
# websockets' sans-I/O connection attributes read by `at_frame_start` (5.).
WEBSOCKETS_INTERNALS = ("parser", "reader", "current_size", "max_message_size", "state")
_AT_EOF = StreamReader.at_eof.__code__  # where websockets' parser waits for a frame
_TEXT_FIN = 0x81  # FIN bit + text opcode
_MASKED = 0x80
_SHORT = 126  # payload lengths below this fit the first length byte
_MEDIUM = 1 << 16  # below this: 126 and a 16-bit length, else 127 and a 64-bit one
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


def frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked (server) final text frame of `length` bytes."""
    if length < _SHORT:
        return bytes((_TEXT_FIN, length))
    if length < _MEDIUM:
        return struct.pack("!BBH", _TEXT_FIN, 126, length)
    return struct.pack("!BBQ", _TEXT_FIN, 127, length)


def at_frame_start(conn: ServerProtocol) -> bool:
    """websockets' parser of an open connection waits for the first byte of a frame,
    between two messages, with nothing buffered (5. above)."""
    if conn.state is not State.OPEN or conn.current_size is not None or conn.reader.buffer:
        return False
    waiting: Any = conn.parser  # a generator: where it waits, through `yield from`s
    while (inner := waiting.gi_yieldfrom) is not None:
        waiting = inner
    return waiting.gi_code is _AT_EOF


class WebSocketProtocol(WebSocketsSansIOProtocol):
    listener: Callable[[str], bool] | None = None  # the receive seam (3. above)
    heard_at = 0.0  # the loop's time of the last text message (4. above)
    splitting = False  # frames are split here (5. above) ...
    partial = b""  # ... and this is the start of one not complete yet

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

    def write_texts(self, frames: Sequence[bytes]) -> bool:
        """`write_text` for several frames in one transport write: a query's answer and
        its `complete` cost one system call, not two (per position report, thousands a
        second)."""
        if not self.writable.is_set() or not self.open:
            return False
        if self.conn.extensions:
            for data in frames:
                self.conn.send_text(data)
            self.transport.write(b"".join(self.conn.data_to_send()))
        else:
            self.transport.write(b"".join([x for d in frames for x in (frame_header(len(d)), d)]))
        return True

    def listen(self, listener: Callable[[str], bool]) -> None:
        """Text messages go to `listener` first, while nothing waits in the ASGI queue;
        it returns False to leave one to ASGI `receive`."""
        self.listener = listener

    def send_keepalive_ping(self) -> None:
        quiet = self.loop.time() - self.heard_at
        interval = self.ping_interval
        if interval is not None and quiet < interval:
            # Alive: the next ping one interval after its last message, if none comes, and
            # a random part of half an interval later (6. above).
            delay = interval - quiet + random.uniform(0, interval / 2)
            self.ping_timer = self.loop.call_later(delay, self.send_keepalive_ping)
            return
        super().send_keepalive_ping()

    def send_receive_event_to_app(self) -> None:
        """A message websockets parsed (5. above): a text one goes where `_text` sends it."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            self.frames = []
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # uvicorn's own path closes with 1007 too, but logs it as an error with a
                # traceback: any client could fill the error log with them.
                self.logger.warning("invalid UTF-8 in a text message: closed with 1007")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            self._text(text)
            return
        super().send_receive_event_to_app()

    def _text(self, text: str) -> None:
        """A text message: to the listener (3. above) while nothing waits in the ASGI
        queue, else queued for ASGI `receive` as uvicorn queues it."""
        self.heard_at = self.loop.time()
        if self.close_sent:
            return  # the app is past its close: discarded, as uvicorn does
        listener = self.listener
        if listener is not None and self.queue.empty() and listener(text):
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:  # uvicorn's backpressure: no more reads until `receive`
            self.read_paused = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self.splitting or self._at_frame_start():
            self._split(self.partial + data if self.partial else data)
        else:
            super().data_received(data)

    def _at_frame_start(self) -> bool:
        """The app listens and websockets waits for a frame: the stream can be split here."""
        return self.listener is not None and at_frame_start(self.conn)

    def _split(self, data: bytes) -> None:
        self.splitting, self.partial = True, b""
        at, end = 0, len(data)
        limit = min(self.conn.max_message_size or _MEDIUM, _MEDIUM - 1)
        while end - at >= 2:
            head, marker = data[at], data[at + 1] ^ _MASKED  # a client's frames are masked
            if head != _TEXT_FIN or marker > 126:  # unmasked (>= 128), or a 64-bit length
                return self._hand_over(data[at:])
            if marker < 126:
                length, start = marker, at + 6  # two header bytes, four of mask
            elif end - at < 4:
                break  # its 16-bit length has not arrived yet
            else:
                length, start = (data[at + 2] << 8) | data[at + 3], at + 8
            if length > limit:
                return self._hand_over(data[at:])
            if end < start + length:
                break  # its payload has not all arrived yet
            try:
                text = apply_mask(data[start : start + length], data[start - 4 : start]).decode()
            except UnicodeDecodeError:
                return self._hand_over(data[at:])
            at = start + length
            self._text(text)
            if self.conn.state is not State.OPEN or self.close_sent:
                return self._hand_over(data[at:])  # closing: websockets' business
        self.partial = data[at:]  # at most one frame's header and payload

    def _hand_over(self, data: bytes) -> None:
        """From a frame's start on, websockets parses (until it waits for one again)."""
        self.splitting, self.partial = False, b""
        if data:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # 7. above: no reference cycle outlives the connection.
        self.listener = None
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(FRAMES, None)

    async def drain(self) -> None:
        """Until the transport takes writes again (also set when the peer is gone)."""
        await self.writable.wait()

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            # uvicorn's shutdown would send 1012 here: our close goes first, and as the
            # close is then sent, uvicorn's own shutdown only stops the keep-alive and
            # closes the transport (a handshake in progress still gets its 500).
            self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
            self.conn.send_close(GOING_AWAY, SHUTDOWN_REASON)
            self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
        super().shutdown()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header size limit and a read deadline.

    uvicorn over httptools has no limit on header size, and the cost of parsing one
    grows quadratically (partial values are concatenated chunk by chunk: one 128 MiB
    header blocked the event loop 16 s). Counting the bytes of a request head as they
    arrive stops it at MAX_HEADER_BYTES plus one read
    (431 and close); the exact size is checked when the head is complete (400 and close).
    uvicorn's h11 protocol has such a limit (h11_max_incomplete_event_size) but serves
    markedly fewer requests per second; this guard costs little (docs/performance.md).

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

    # [override]: narrower than BaseProtocol's BaseTransport, as in uvicorn's own method
    # (the one called here); a stream protocol is always given a Transport.
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
        # This protocol is done: the transport is the WebSocket protocol's now, and this
        # one never hears of the connection again (no `connection_lost`, where uvicorn
        # drops its parser). The parser's callbacks are this protocol's bound methods, a
        # reference cycle: one that lived through a full collection (a client slow to
        # send its handshake) stayed as frozen garbage (taxi.core.gcpolicy), ~2.8 a
        # second at rush hour (bench.rush, 2026-12-06). As uvicorn does there, drop it.
        self.parser = None  # type: ignore[assignment]

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
