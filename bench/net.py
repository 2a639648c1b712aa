"""Lean clients for the load generator: a raw WebSocket client protocol and a
keep-alive HTTP/1.1 client, both on plain asyncio.

A `websockets` connection costs a reader task, a frame assembler and a queue per
socket: at 10,000 sockets that is the generator's core spent before the server's.
Here a socket is one `asyncio.Protocol`: frames are cut out of the byte stream in
`data_received`, stamped once per read with `time.time()`, and handed to a sink; the
JSON is parsed after the measurement. Client frames use a zero mask key (legal: the
mask is mandatory, its value is not), so nothing is XORed."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

Sink = Callable[["WS", float, bytes], None]


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


class WS(asyncio.Protocol):
    __slots__ = (
        "buf",
        "closed",
        "inbox",
        "index",
        "on_lost",
        "open",
        "request",
        "sink",
        "transport",
        "waiter",
    )

    def __init__(self, request: bytes, index: int) -> None:
        self.request = request
        self.index = index
        self.buf = bytearray()
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.sink: Sink | None = None
        self.on_lost: Callable[[], None] | None = None  # told once the socket is gone
        self.closed = False
        self.transport: Any = None  # uvloop's transports are no asyncio.Transport

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during handshake"))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        if self.on_lost is not None:
            self.on_lost()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf
        buf += data
        if not self.open.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.open.set_exception(ConnectionError(head.decode(errors="replace")))
                return
            self.open.set_result(None)
        while True:
            n = len(buf)
            if n < 2:
                return
            size = buf[1] & 0x7F
            if size < 126:
                start = 2
            elif size == 126:
                if n < 4:
                    return
                size, start = int.from_bytes(buf[2:4], "big"), 4
            else:
                if n < 10:
                    return
                size, start = int.from_bytes(buf[2:10], "big"), 10
            end = start + size
            if n < end:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[start:end])
            del buf[:end]
            if opcode in (1, 2):
                if self.sink is not None:
                    self.sink(self, now, payload)
                else:
                    self.inbox.append(payload)
                    if self.waiter is not None and not self.waiter.done():
                        self.waiter.set_result(None)
            elif opcode == 9:
                self._write(_frame(0xA, payload))
            elif opcode == 8:
                self.closed = True
                self._write(_frame(0x8, payload[:2]))
                assert self.transport is not None
                self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            data = message
        else:
            data = message.encode() if isinstance(message, str) else orjson.dumps(message)
        self._write(_frame(0x1, data))

    async def recv(self, wait: float = 30.0) -> bytes:
        while not self.inbox:
            if self.closed:
                raise ConnectionError(f"socket {self.index} closed")
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, wait)
        return self.inbox.popleft()

    async def recv_json(self, wait: float = 30.0) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(await self.recv(wait))
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def ws_connect(
    port: int, path: str, index: int, subprotocol: str | None = None, host: str = "127.0.0.1"
) -> WS:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, ws = await loop.create_connection(lambda: WS(request, index), host, port)
    await asyncio.wait_for(ws.open, 30)
    return ws


class HTTP:
    """One keep-alive HTTP/1.1 connection; responses must carry Content-Length."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reused = self.writer is not None
        try:
            return await self._request(method, path, body, headers)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
            # The server closed the idle keep-alive connection (uvicorn: after 5 s):
            # the request was never read, so sending it again is safe.
            await self.close()
            return await self._request(method, path, body, headers)

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        assert self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            field, _, content = line.partition(b":")
            if field.lower() == b"content-length":
                length = int(content)
        return status, await self.reader.readexactly(length)

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = orjson.dumps({"query": query, "variables": variables or {}})
        status, data = await self.request("POST", "/graphql", body, headers)
        result: dict[str, Any] = orjson.loads(data)
        if status != 200 and "errors" not in result:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        return result

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def gql_data(result: dict[str, Any], field: str) -> Any:
    if result.get("errors"):
        raise RuntimeError(f"{field}: {result['errors']}")
    return result["data"][field]


def error_code(result: dict[str, Any]) -> str | None:
    errors = result.get("errors")
    if not errors:
        return None
    return str((errors[0].get("extensions") or {}).get("code", "UNKNOWN"))
