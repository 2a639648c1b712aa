"""The frames `taxi serve` splits itself (taxi/transport/server.py, 5.), from a raw TCP
socket: text messages whole however TCP cuts them, and every other frame (fragments,
pings, bad UTF-8, unmasked, too large) still handled by websockets as before, with its
close codes. The server's own view of a half-received frame (`partial`) says when a cut
has arrived, so the rest is sent only then."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from taxi.core.config import Settings
from taxi.transport.server import WebSocketProtocol
from tests import gqlws
from tests.helpers import account
from tests.live import LiveServer, serve
from tests.wait import WAIT, eventually

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
ME_ID = "{ me { id } }"


def frame(
    payload: bytes, *, opcode: int = TEXT, fin: bool = True, masked: bool = True, wide: bool = False
) -> bytes:
    """A client's frame; `wide`: a 64-bit length whatever the size."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if wide or n > 0xFFFF:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    elif n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(message: dict[str, Any]) -> bytes:
    return frame(json.dumps(message).encode())


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame (unmasked): opcode, payload."""
        async with asyncio.timeout(WAIT):
            head = await self.reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return head[0] & 0x0F, await self.reader.readexactly(n)

    async def message(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == TEXT, (opcode, payload)
        message: dict[str, Any] = json.loads(payload)
        return message

    async def closed_with(self) -> int:
        opcode, payload = await self.frame()
        assert opcode == CLOSE, (opcode, payload)
        code: int = struct.unpack("!H", payload[:2])[0]
        return code

    async def answered(self, user_id: str, *op_ids: str) -> None:
        """Each of `op_ids` answered (`me`, then complete); operations run side by side,
        so in any order among them."""
        seen: dict[str, list[dict[str, Any]]] = {op_id: [] for op_id in op_ids}
        for _ in range(2 * len(op_ids)):
            message = await self.message()
            seen[message["id"]].append(message)
        for op_id, messages in seen.items():
            assert messages == [
                {"id": op_id, "type": "next", "payload": {"data": {"me": {"id": user_id}}}},
                {"id": op_id, "type": "complete"},
            ]


@asynccontextmanager
async def raw_socket(live: LiveServer, token: str) -> AsyncIterator[Raw]:
    """An acknowledged graphql-transport-ws socket, frames by hand."""
    port = int(live.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101"), head
    raw = Raw(reader, writer)
    try:
        await raw.send(text(gqlws.authenticated(token)))
        assert await raw.message() == gqlws.ACK
        yield raw
    finally:
        writer.close()


def server_side(live: LiveServer) -> WebSocketProtocol:
    """The server's protocol object of the one open socket."""
    state = live.server.server_state
    (proto,) = [c for c in state.connections if isinstance(c, WebSocketProtocol)]
    return proto


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    async with serve(settings) as server:
        yield server


async def test_messages_cut_anywhere_by_tcp_arrive_whole(live: LiveServer) -> None:
    """Three operations (one over 125 bytes: a 16-bit length) sent as one stream, cut in
    two at every kind of place: inside a header, the 16-bit length, the mask, a payload,
    between frames. Every operation is answered whole."""
    async with live.http() as c:
        user = await account(c, "RIDER")
    padded = "{ me { id } }" + " " * 200
    async with raw_socket(live, user.access) as raw:
        proto = server_side(live)
        for cut in (1, 2, 3, 5, 7, 9, 40, 100, -1):
            ids = [f"{cut}a", f"{cut}b", f"{cut}c"]
            frames = [
                text(gqlws.subscribe(ids[0], ME_ID)),
                text(gqlws.subscribe(ids[1], padded)),
                text(gqlws.subscribe(ids[2], ME_ID)),
            ]
            stream = frames[0] + frames[1] + frames[2]
            # Cuts inside the second frame: its header, length, mask, payload (-1: the
            # last byte of the stream).
            whole = 1 if cut > 0 else 2  # frames complete before the cut
            at = len(frames[0]) + cut if cut > 0 else len(stream) - 1
            await raw.send(stream[:at])
            await raw.answered(user.id, *ids[:whole])  # they need nothing more
            start = len(b"".join(frames[:whole]))
            await eventually(lambda: _partial(proto), _equal_to(stream[start:at]), what="the cut")
            await raw.send(stream[at:])
            await raw.answered(user.id, *ids[whole:])
        assert proto.partial == b""
        assert proto.splitting


async def _partial(proto: WebSocketProtocol) -> bytes:
    return proto.partial


def _equal_to(expected: bytes) -> Callable[[bytes], bool]:
    return lambda seen: seen == expected


async def test_fragments_and_pings_go_through_websockets(live: LiveServer) -> None:
    """A message in three fragments, a ping between two messages, a short message with a
    64-bit length: websockets parses them (the ping gets its pong), and splitting resumes
    at the next frame's start."""
    async with live.http() as c:
        user = await account(c, "RIDER")
    async with raw_socket(live, user.access) as raw:
        proto = server_side(live)
        body = json.dumps(gqlws.subscribe("frag", ME_ID)).encode()
        await raw.send(
            frame(body[:10], fin=False)
            + frame(body[10:20], opcode=CONT, fin=False)
            + frame(body[20:], opcode=CONT)
        )
        await raw.answered(user.id, "frag")
        await raw.send(frame(b"hello", opcode=PING) + text(gqlws.subscribe("after", ME_ID)))
        assert await raw.frame() == (PONG, b"hello")
        await raw.answered(user.id, "after")
        wide = json.dumps(gqlws.subscribe("wide", ME_ID)).encode()
        await raw.send(frame(wide, wide=True))  # a 64-bit length, however short
        await raw.answered(user.id, "wide")
        await raw.send(text(gqlws.subscribe("split", ME_ID)))
        await raw.answered(user.id, "split")
        assert proto.splitting  # back to splitting once websockets waited at a frame start


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(b'{"type": "ping", "x": "\xff"}'), 1007),  # not UTF-8
        (frame(b'{"type": "ping"}', masked=False), 1002),  # a client must mask
        (frame(b"x" * (64 * 1024 + 1)), 1009),  # over MAX_WS_MESSAGE_BYTES
        (frame(b"\x00\x01", opcode=BINARY), 4400),  # graphql-transport-ws: text only
    ],
    ids=["bad-utf8", "unmasked", "too-large", "binary"],
)
async def test_frames_not_split_here_keep_their_close_codes(
    live: LiveServer, data: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with live.http() as c:
        user = await account(c, "RIDER")
    async with raw_socket(live, user.access) as raw:
        assert server_side(live).splitting
        await raw.send(text(gqlws.subscribe("ok", ME_ID)))
        await raw.answered(user.id, "ok")
        await raw.send(data)
        assert await raw.closed_with() == code
    # A client's bad frame is not the server's error: no traceback in its log.
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
