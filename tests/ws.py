"""The one GraphQL-over-WebSocket client of the tests, over `websockets`.

Speaks both subprotocols: `graphql-transport-ws` (the graphql-ws library) and the legacy
`graphql-ws` (subscriptions-transport-ws), in tests/gqlws.py's messages (which the benchmarks'
lean sockets speak too). Reads are exact: each message is asserted
whole, in the order the server sent it, and a close is asserted by its code. A client
made with `interleaved=True` reads each operation's messages in order but lets
operations interleave (for several streams on one socket, read in any order or at once).
Every wait has a generous timeout, so a broken server fails a test instead of hanging
it; nothing here measures time."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests import gqlws
from tests.gqlws import LEGACY, PROTOCOLS, TRANSPORT, Message
from tests.wait import WAIT

__all__ = ["LEGACY", "PROTOCOLS", "TRANSPORT", "Message", "WsClient", "open_ws", "session"]
CLOSE_TIMEOUT = 2

Check = Callable[[Message], bool]


def anything(_data: Message) -> bool:
    return True


class WsClient:
    def __init__(self, conn: ClientConnection, protocol: str, *, interleaved: bool) -> None:
        self.conn = conn
        self.protocol = protocol
        self.interleaved = interleaved
        self._unread: deque[Message] = deque()  # read off the socket, not yet asked for
        self._reading = asyncio.Lock()  # one reader of the socket at a time

    @property
    def legacy(self) -> bool:
        return self.protocol == LEGACY

    # -- raw frames ----------------------------------------------------------------------

    async def send(self, message: Message | str) -> None:
        await self.conn.send(message if isinstance(message, str) else json.dumps(message))

    async def _read(self, ka: bool) -> Message:
        while True:
            frame = await self.conn.recv()
            assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
            message = json.loads(frame)
            assert isinstance(message, dict), message
            if message.get("type") == "ka" and not ka:
                continue
            return message

    async def recv(self, within: float = WAIT, *, ka: bool = False) -> Message:
        """The next message (a JSON object in a text frame). Legacy keep-alives (`ka`)
        are skipped unless `ka` is true."""
        if self._unread:
            return self._unread.popleft()
        async with asyncio.timeout(within), self._reading:
            return await self._read(ka)

    async def message(self, op_id: str, within: float = WAIT) -> Message:
        """The next message of `op_id`. Exact by default: the next message at all must be
        it. Interleaved: messages of other operations are kept for their readers."""
        if not self.interleaved:
            message = await self.recv(within)
            assert message.get("id") == op_id, message
            return message
        async with asyncio.timeout(within):
            while True:
                for message in self._unread:
                    if message.get("id") == op_id:
                        self._unread.remove(message)
                        return message
                async with self._reading:  # cancelling recv() (on timeout) loses nothing
                    if not any(m.get("id") == op_id for m in self._unread):
                        self._unread.append(await self._read(ka=False))

    async def closed(self, code: int, within: float = WAIT) -> str:
        """Wait for the server to close the socket with `code`; any other message first
        (keep-alives aside) fails. Returns the close reason."""
        try:
            message = await self.recv(within)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, f"no close frame from the server: {exc!r}"
            assert exc.rcvd.code == code, f"closed with {exc.rcvd}, expected {code}"
            return exc.rcvd.reason
        raise AssertionError(f"expected close {code}, got {message}")

    # -- the protocol ----------------------------------------------------------------------

    async def init(self, payload: Message | None = None) -> None:
        """connection_init; nothing is read back."""
        await self.send(gqlws.connection_init(payload))

    async def handshake(self, payload: Message | None) -> None:
        """connection_init, then exactly a connection_ack."""
        await self.init(payload)
        assert await self.recv() == gqlws.ACK

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        await self.send(gqlws.subscribe(op_id, query, variables, legacy=self.legacy))

    async def stop(self, op_id: str) -> None:
        """End `op_id` from the client side. graphql-transport-ws answers nothing; the
        legacy protocol answers `complete` (read here: use only on quiet operations)."""
        await self.send(gqlws.stop(op_id, legacy=self.legacy))
        if self.legacy:
            await self.complete(op_id)

    async def next(self, op_id: str, within: float = WAIT) -> Message:
        """The next result of `op_id` (no errors): its `data`."""
        message = await self.message(op_id, within)
        assert message["type"] == gqlws.result_type(legacy=self.legacy), message
        assert "errors" not in message["payload"], message
        data: Message = message["payload"]["data"]
        return data

    async def until(
        self, op_id: str, wanted: Check, *, skip: Check = anything, within: float = WAIT
    ) -> Message:
        """The first result of `op_id` that is `wanted`, passing over results that `skip`
        allows (e.g. events of other tests on a shared Redis); anything else fails."""
        async with asyncio.timeout(within):
            while True:
                data = await self.next(op_id, within)
                if wanted(data):
                    return data
                assert skip(data), f"unexpected on {op_id}: {data}"

    async def next_where(self, op_id: str, keep: Check, within: float = WAIT) -> Message:
        """The next result of `op_id` that `keep` accepts, skipping others: for global
        channels (trip requests, the pool) that other tests on a shared Redis also use."""
        return await self.until(op_id, keep, within=within)

    async def complete(self, op_id: str, within: float = WAIT) -> None:
        assert await self.message(op_id, within) == {"id": op_id, "type": "complete"}

    async def error(self, op_id: str, within: float = WAIT) -> Message:
        """The `error` message that ends `op_id`: its (first) GraphQL error."""
        message = await self.message(op_id, within)
        assert message["type"] == "error", message
        payload = message["payload"]
        # graphql-transport-ws sends a list of errors; legacy graphql-ws one error.
        if not self.legacy:
            assert isinstance(payload, list) and len(payload) == 1, payload
            payload = payload[0]
        assert isinstance(payload, dict), payload
        return payload


@asynccontextmanager
async def open_ws(
    url: str, protocol: str = TRANSPORT, *, interleaved: bool = False, **kwargs: Any
) -> AsyncIterator[WsClient]:
    """A socket with `protocol` negotiated and nothing sent yet."""
    options = {"open_timeout": WAIT, "close_timeout": CLOSE_TIMEOUT, **kwargs}
    async with connect(url, subprotocols=[Subprotocol(protocol)], **options) as conn:
        assert conn.subprotocol == protocol
        yield WsClient(conn, protocol, interleaved=interleaved)


@asynccontextmanager
async def session(
    url: str, token: str, protocol: str = TRANSPORT, *, interleaved: bool = False, **kwargs: Any
) -> AsyncIterator[WsClient]:
    """A socket past a successful handshake with `{"authToken": token}`."""
    async with open_ws(url, protocol, interleaved=interleaved, **kwargs) as ws:
        await ws.handshake({"authToken": token})
        yield ws
