"""graphql-transport-ws sessions for the load generators, on bench.net's lean WebSocket and
in the project's one client vocabulary (tests/gqlws.py, also under the tests' client):
connection_init, operations as pre-encoded frames, answers dispatched by operation id to
callbacks (no future or task per message; `call`, for the setup's awaited calls, has one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from bench.net import WS, ws_connect
from tests import gqlws
from tests.gqlws import Template, failure, template

__all__ = ["GqlSocket", "Template", "failure", "handshake", "template"]
ACK_TIMEOUT = 30.0
PONG = orjson.dumps(gqlws.PONG)
CLOSED = {"message": "socket closed", "extensions": {"code": "CLOSED"}}
# (callback, its first argument); the callback gets (argument, message)
Handler = tuple[Callable[[Any, dict[str, Any]], None], Any]


async def connect(port: int, token: str, index: int = 0) -> WS:
    """A lean socket past connection_ack (answers read from its inbox: no sink set)."""
    ws = await ws_connect(port, "/graphql", index, gqlws.TRANSPORT)
    await handshake(ws, token)
    return ws


async def handshake(ws: WS, token: str) -> None:
    ws.send(gqlws.authenticated(token))
    ack = await ws.recv_json(ACK_TIMEOUT)
    if ack != gqlws.ACK:
        ws.close()
        raise ConnectionError(f"no connection_ack: {ack}")


class GqlSocket:
    __slots__ = ("ack", "calls", "serial", "streams", "ws")

    def __init__(self, ws: WS) -> None:
        self.ws = ws
        self.calls: dict[str, Handler] = {}  # answered once (next or error), then dropped
        self.streams: dict[str, Handler] = {}  # every `next` until complete
        self.serial = 0
        self.ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ws.sink = self._frame
        ws.on_lost = self._lost

    @classmethod
    async def open(cls, port: int, token: str, index: int = 0) -> GqlSocket:
        sock = cls(await ws_connect(port, "/graphql", index, gqlws.TRANSPORT))
        sock.ws.send(gqlws.authenticated(token))
        try:
            await asyncio.wait_for(sock.ack, ACK_TIMEOUT)
        except BaseException:
            sock.ws.close()
            raise
        return sock

    def _frame(self, _ws: WS, _at: float, data: bytes) -> None:
        msg = orjson.loads(data)
        kind = msg["type"]
        if kind == "next" or kind == "error":
            op = msg["id"]
            handler = self.streams.get(op) if kind == "next" else None
            if handler is None:
                handler = self.calls.pop(op, None) or self.streams.pop(op, None)
            if handler is not None:
                handler[0](handler[1], msg)
        elif kind == "complete":
            self.calls.pop(msg["id"], None)
            self.streams.pop(msg["id"], None)
        elif kind == "ping":
            self.ws.send(PONG)
        elif kind == "connection_ack" and not self.ack.done():
            self.ack.set_result(None)

    def _lost(self) -> None:
        """Pending answers fail with code CLOSED (counted like any error)."""
        if not self.ack.done():
            self.ack.set_exception(ConnectionError("closed before connection_ack"))
        calls, self.calls = self.calls, {}
        for op, (callback, arg) in calls.items():
            callback(arg, {"type": "error", "id": op, "payload": [CLOSED]})

    def _send(self, tpl: Template, op: str, variables: bytes) -> None:
        self.ws.send(gqlws.framed(tpl, op, variables))

    def op(self, tpl: Template, variables: bytes, handler: Handler) -> None:
        """Sends `tpl`'s operation with `variables` (JSON); its answer goes to `handler`."""
        self.serial += 1
        op = str(self.serial)
        if self.ws.closed:
            handler[0](handler[1], {"type": "error", "id": op, "payload": [CLOSED]})
            return
        self.calls[op] = handler
        self._send(tpl, op, variables)

    def subscribe(self, tpl: Template, variables: bytes, handler: Handler) -> None:
        """As `op`, for a subscription: `handler` gets every result."""
        self.serial += 1
        op = str(self.serial)
        self.streams[op] = handler
        self._send(tpl, op, variables)

    async def call(self, tpl: Template, variables: Any) -> dict[str, Any]:
        """Sends and waits for the answer (setup only)."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.op(tpl, orjson.dumps(variables), (_resolve, done))
        return await done

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def close(self) -> None:
        self.ws.close()


def _resolve(done: asyncio.Future[dict[str, Any]], msg: dict[str, Any]) -> None:
    if not done.done():
        done.set_result(msg)
