"""One GraphQL-over-WebSocket connection: the protocol's state machine (handshake, auth,
token expiry, init deadline, keep-alive, close codes). Each incoming message is handled
in the socket's receive loop; its operations are taxi/transport/live/operations.py's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from taxi.api.context import Context
from taxi.api.schema.errors import is_outage
from taxi.core import gcpolicy
from taxi.core.tasks import stop_all
from taxi.domain import auth
from taxi.domain.errors import RateLimited, ServiceUnavailable, Unauthenticated
from taxi.transport.live import protocol as p
from taxi.transport.live.operations import Operations
from taxi.transport.live.registry import SocketRegistry, TooManySockets
from taxi.transport.live.wire import ASGISend, Gone, Outbox, unless_gone

if TYPE_CHECKING:
    from taxi.api.executor import Executor
    from taxi.transport.live.hub import Hub

log = logging.getLogger("taxi.transport.live")

ACK, PONG, KEEP_ALIVE = (m.encode() for m in (p.ACK, p.PONG, p.KEEP_ALIVE))
# Operations in flight on one socket (queries, mutations, subscriptions): the next one
# gets an error, the socket stays open.
MAX_OPERATIONS_PER_SOCKET = 100
LIMITED = RateLimited.code


class Socket:
    # Many of these live at once (one per connection): no per-instance __dict__.
    __slots__ = (
        "_send",
        "_tasks",
        "_timers",
        "acked",
        "closed",
        "context",
        "dialect",
        "init_received",
        "operations",
        "outbox",
        "registry",
        "settings",
        "waiting",
    )

    def __init__(
        self,
        context: Context,
        send: ASGISend,
        outbox: Outbox,
        dialect: p.Dialect,
        *,
        executor: Executor,
        hub: Hub,
        registry: SocketRegistry,
    ) -> None:
        self.context = context
        self.settings = context.settings
        self.dialect = dialect
        self._send = send
        self.outbox = outbox
        self.registry = registry
        self.operations = Operations(executor, hub, context, outbox, dialect)
        self._tasks: set[asyncio.Task[Any]] = set()  # what the timers started
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.init_received = False
        self.acked = False
        self.closed = False
        self.waiting = False  # the receive loop is idle, waiting for a message

    # -- the connection ------------------------------------------------------------------

    async def serve(self, receive: Any) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": self.dialect.name})
        # Both protocols: subscriptions-transport-ws has no deadline of its own, and an
        # idle socket would hold memory forever.
        self._later("init", self.settings.ws_init_timeout_seconds, self._init_timeout)
        gcpolicy.opened()  # _cleanup says when it closed
        try:
            while True:
                self.waiting = True
                message = await receive()
                self.waiting = False
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                try:
                    if text is None:
                        await self._binary()
                    elif not self.closed:
                        await self._handle(text)
                except Gone:
                    return  # the peer went away while we answered it
        finally:
            await self._cleanup()

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.operations.closed = True
        await self.outbox.close()
        with suppress(OSError, RuntimeError):  # already gone
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _cleanup(self) -> None:
        self.closed = True
        self.registry.discard(self)
        gcpolicy.closed()  # what a closed socket leaves in frozen cycles
        for timer in self._timers.values():
            timer.cancel()
        await self.operations.close()
        await stop_all(list(self._tasks))
        await self.outbox.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(unless_gone(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(self, name: str, delay: float, work: Any) -> None:
        if (old := self._timers.pop(name, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, lambda: self._spawn(work()))

    async def _binary(self) -> None:
        if self.dialect.legacy:
            await self.close(p.UNSUPPORTED_DATA, "WebSocket message type must be text")
        else:
            await self.close(p.BAD_REQUEST, "WebSocket message must be text")

    # -- messages --------------------------------------------------------------------------

    def heard(self, text: str) -> bool:
        """A message handed over by the server's receive seam as it arrives
        (taxi/transport/server.py): a well-formed new operation on an acknowledged socket
        starts here, with no await between its frame and its start; anything else is
        declined (False) and comes through the receive loop, which also keeps the order
        while it is busy."""
        if not self.waiting or not self.acked or self.closed:
            return False
        d = self.dialect
        message = p.parse(text)
        if message is None or message["type"] != d.start or p.problem(message, d) is not None:
            return False
        op_id = message["id"]
        if op_id in self.operations or len(self.operations) >= MAX_OPERATIONS_PER_SOCKET:
            return False
        self.operations.start(op_id, message["payload"])
        return True

    async def _handle(self, text: str) -> None:
        d = self.dialect
        message = p.parse(text)
        if message is None:
            if not d.legacy:
                await self.close(p.BAD_REQUEST, "WebSocket message must be valid JSON")
            return  # legacy: ignored, as subscriptions-transport-ws does
        kind = message["type"]
        if (problem := p.problem(message, d)) is not None:
            if not d.legacy or problem == p.ID_TOO_LONG:
                await self.close(p.BAD_REQUEST, problem)
            elif kind == "connection_init":
                await self.outbox.send(b'{"type":"connection_error"}')
                await self.close(p.NORMAL)
            return
        if kind == "connection_init":
            await self._connection_init(message.get("payload") or {})
        elif kind == d.start:
            await self._start(message["id"], message["payload"])
        elif kind == d.stop:
            await self.operations.stop(message["id"])
        elif kind == "ping" and not d.legacy:
            await self.outbox.send(PONG)
        elif kind == "pong" and not d.legacy:
            pass
        elif kind == "connection_terminate" and d.legacy:
            await self.close(p.NORMAL)
        elif not d.legacy:
            await self.close(p.BAD_REQUEST, f"Unknown message type: {kind}")

    async def _connection_init(self, params: dict[str, Any]) -> None:
        legacy = self.dialect.legacy
        if self.init_received:
            # Both dialects: a socket's identity never changes once acknowledged (a
            # legacy client re-initialising with another user's token kept the first
            # user's subscriptions delivering past that user's log-out).
            await self.close(p.TOO_MANY, "Too many initialisation requests")
            return
        self.init_received = True
        if (timer := self._timers.pop("init", None)) is not None:
            timer.cancel()
        ctx = self.context
        ctx.token = auth.token_from_connection_params(params)
        try:
            await ctx.user()
            assert ctx.token is not None
            claims = auth.decode_token(ctx.token, settings=self.settings, token_type="access")
        except Unauthenticated as exc:
            if not legacy:
                await self.close(p.FORBIDDEN, "Forbidden")
                return
            error = {"message": exc.message, "extensions": {"code": exc.code}}
            await self.outbox.send(p.connection_error(error).encode())
            await self.close(p.INTERNAL_ERROR)  # as subscriptions-transport-ws
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            await self._unavailable(exc)
            return
        user = await ctx.user()
        assert user.id is not None
        try:
            self.registry.add(self, user_id=user.id, sid=str(claims["sid"]), revoke=ctx.revoke)
        except TooManySockets:
            if legacy:
                error = {"message": "Too many open sockets.", "extensions": {"code": LIMITED}}
                await self.outbox.send(p.connection_error(error).encode())
            await self.close(p.TOO_MANY, "Too many sockets")
            return
        delay = max(0.0, auth.expires_at(claims).timestamp() - time.time())
        self._later("expiry", delay, self._expire)
        await self.outbox.send(ACK)
        self.acked = True
        if legacy and "ka" not in self._timers:
            self._keep_alive()

    async def _unavailable(self, exc: Exception) -> None:
        """The database went away while connection_init authenticated the token: 1013
        Try Again Later, which clients retry (4403 would say the token was bad)."""
        log.warning("connection_init: backend unavailable: %r", exc)
        if self.dialect.legacy:
            error = {
                "message": ServiceUnavailable.default_message,
                "extensions": {"code": ServiceUnavailable.code},
            }
            await self.outbox.send(p.connection_error(error).encode())
        await self.close(p.TRY_AGAIN_LATER, "Service unavailable")

    def _keep_alive(self) -> None:
        if self.closed:
            return
        self.outbox.offer("", "ka", KEEP_ALIVE)
        loop = asyncio.get_running_loop()
        self._timers["ka"] = loop.call_later(self.settings.ws_keepalive_seconds, self._keep_alive)

    async def _init_timeout(self) -> None:
        if not self.init_received:
            await self.close(p.INIT_TIMEOUT, "Connection initialisation timeout")

    async def _expire(self) -> None:
        """The token that opened the socket expired: clients reconnect with a fresh one."""
        await self.forbid("Token has expired.")

    async def forbid(self, message: str) -> None:
        """4403, as for a bad token at connection_init (its token expired, its session
        ended); the legacy protocol first gets a connection_error saying why."""
        if self.closed:
            return
        if self.dialect.legacy:
            with suppress(Gone):
                await self.outbox.send(p.connection_error({"message": message}).encode())
        await self.close(p.FORBIDDEN, "Forbidden")

    async def _start(self, op_id: str, payload: dict[str, Any]) -> None:
        if not self.acked:
            await self.close(p.UNAUTHORIZED, "Unauthorized")
            return
        if op_id in self.operations:
            if not self.dialect.legacy:
                await self.close(p.DUPLICATE_ID, f"Subscriber for {op_id} already exists")
                return
            await self.operations.stop(op_id, quiet=True)  # legacy: the new one replaces it
        if len(self.operations) >= MAX_OPERATIONS_PER_SOCKET:
            limit: dict[str, Any] = {"message": "Subscription limit reached"}
            await self.outbox.send(p.error(op_id, [limit], self.dialect).encode())
            return
        # Its variables are checked by the executor, first (taxi/api/executor.py).
        self.operations.start(op_id, payload)
