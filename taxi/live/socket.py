"""One GraphQL-over-WebSocket connection: its subprotocol, auth, timers and operations.

Each incoming message is handled in the socket's receive loop; an operation (a query,
a mutation, or setting a subscription up) runs in a task of its own while it runs, so
a slow query never holds up a ping. A live subscription then becomes a record in the
hub (taxi/live/hub.py) and its task ends: the socket holds records, not tasks. What
the client may see, and when, is the feed's business (taxi/resolvers/live.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, OperationType

from taxi import auth, metrics, persisted
from taxi.context import Context
from taxi.errors import AppError, NotFound, ServiceUnavailable, Unauthenticated
from taxi.live import protocol as p
from taxi.live.hub import Record
from taxi.live.wire import ASGISend, Gone, Outbox
from taxi.schema.errors import is_outage

if TYPE_CHECKING:
    from taxi.live.endpoint import LiveEndpoint

log = logging.getLogger("taxi.live")

ACK, PONG, KEEP_ALIVE = (m.encode() for m in (p.ACK, p.PONG, p.KEEP_ALIVE))
REFRESH_KEY = "__current__"  # the outbox key of a state re-read after a reconnect


async def _unless_gone(work: Coroutine[Any, Any, None]) -> None:
    with suppress(Gone):
        await work


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
        "endpoint",
        "hub",
        "init_received",
        "outbox",
        "records",
        "running",
        "settings",
    )

    def __init__(
        self,
        endpoint: LiveEndpoint,
        context: Context,
        send: ASGISend,
        outbox: Outbox,
        dialect: p.Dialect,
    ) -> None:
        self.endpoint = endpoint
        self.hub = context.services.hub
        self.context = context
        self.settings = context.settings
        self.dialect = dialect
        self._send = send
        self.outbox = outbox
        self.records: dict[str, Record] = {}
        self.running: dict[str, asyncio.Task[None]] = {}  # operations being set up or run
        self._tasks: set[asyncio.Task[Any]] = set()  # timers' work, re-reads
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.init_received = False
        self.acked = False
        self.closed = False

    # -- the connection ------------------------------------------------------------------

    async def serve(self, receive: Any) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": self.dialect.name})
        if not self.dialect.legacy:
            self._later("init", self.settings.ws_init_timeout_seconds, self._init_timeout)
        try:
            while True:
                message = await receive()
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
        await self.outbox.close()
        with suppress(OSError, RuntimeError):  # already gone
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _cleanup(self) -> None:
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        for record in list(self.records.values()):
            self._drop(record)
        tasks = [*self.running.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(BaseException):
                await task
        await self.outbox.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_unless_gone(work))
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

    async def _handle(self, text: str) -> None:
        d = self.dialect
        message = p.parse(text)
        if message is None:
            if not d.legacy:
                await self.close(p.BAD_REQUEST, "WebSocket message must be valid JSON")
            return  # legacy: ignored, as subscriptions-transport-ws does
        kind = message["type"]
        if (problem := p.problem(message, d)) is not None:
            if not d.legacy:
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
            await self._stop(message["id"])
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
        if self.init_received and not legacy:
            await self.close(p.TOO_MANY_INITS, "Too many initialisation requests")
            return
        self.init_received = True
        if (timer := self._timers.pop("init", None)) is not None:
            timer.cancel()
        ctx = self.context
        ctx.connection_params = params
        ctx.token = auth.token_from_connection_params(params)
        # Legacy graphql-ws lets a client send connection_init again: that token counts.
        ctx.forget_user()
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
        if self.closed:
            return
        if self.dialect.legacy:
            await self.outbox.send(p.connection_error({"message": "Token has expired."}).encode())
        await self.close(p.FORBIDDEN, "Forbidden")

    # -- operations ------------------------------------------------------------------------

    async def _start(self, op_id: str, payload: dict[str, Any]) -> None:
        if not self.acked:
            await self.close(p.UNAUTHORIZED, "Unauthorized")
            return
        if op_id in self.records or op_id in self.running:
            if not self.dialect.legacy:
                await self.close(p.DUPLICATE_ID, f"Subscriber for {op_id} already exists")
                return
            await self._stop(op_id, quiet=True)  # legacy: the new one replaces it
        self.running[op_id] = asyncio.create_task(self._operation(op_id, payload))

    async def _stop(self, op_id: str, *, quiet: bool = False) -> None:
        record = self.records.get(op_id)
        if record is not None:
            self._drop(record)
            self.outbox.forget(op_id)
        task = self.running.pop(op_id, None)
        if task is not None:
            task.cancel()
        if self.dialect.legacy and not quiet and (record or task):
            await self.outbox.send(p.complete(op_id).encode())

    async def _operation(self, op_id: str, payload: dict[str, Any]) -> None:
        try:
            await self._run(op_id, payload)
        except Gone:
            pass  # the socket closed under the operation: its receive loop cleans up
        except Exception as exc:  # noqa: BLE001 - an operation's failure ends it alone
            if not self.closed:
                with suppress(Gone):
                    await self._fail(op_id, exc)
        finally:
            if self.running.get(op_id) is asyncio.current_task():
                del self.running[op_id]

    def _errors(self, exc: Exception) -> list[dict[str, Any]]:
        """The client's view of `exc`: its code (an outage: SERVICE_UNAVAILABLE), logged
        and masked when it is a bug (taxi/schema/errors.py)."""
        return self.endpoint.graphql.errors([GraphQLError(str(exc), original_error=exc)])

    async def _fail(self, op_id: str, exc: Exception) -> None:
        await self.outbox.send(p.error(op_id, self._errors(exc), self.dialect).encode())

    async def _refuse(
        self, op_id: str, errors: list[dict[str, Any]], *, name: object, kind: str
    ) -> None:
        """The operation ends before it runs: an `error` message, the socket stays open."""
        code = str((errors[0].get("extensions") or {}).get("code", "ERROR"))
        metrics.operation(name=name, kind=kind, code=code, seconds=None)
        await self.outbox.send(p.error(op_id, errors, self.dialect).encode())

    async def _run(self, op_id: str, payload: dict[str, Any]) -> None:
        graphql = self.endpoint.graphql
        name, variables = payload.get("operationName"), payload.get("variables")
        try:
            query = await self.context.services.documents.resolve(
                query=payload.get("query"), extensions=payload.get("extensions")
            )
            if not isinstance(query, str):
                raise persisted.Refused("BAD_REQUEST", "No GraphQL query found in the request.")
        except persisted.Refused as exc:
            await self._refuse(op_id, [exc.as_error()], name=name, kind="unknown")
            return
        prepared = graphql.prepare(query)
        if isinstance(prepared, list):
            await self._refuse(op_id, prepared, name=name, kind="unknown")
            return
        prefix = p.frame_prefix(op_id, self.dialect)
        if graphql.operation_type(prepared, name) is not OperationType.SUBSCRIPTION:
            ctx = self.context
            result = await graphql.execute(query, variables=variables, name=name, context=ctx)
            await self.outbox.send(prefix + result + b"}")
            await self.outbox.send(p.complete(op_id).encode())
            return
        opened = await graphql.open(prepared, variables=variables, name=name, context=self.context)
        if isinstance(opened, list):
            await self._refuse(op_id, opened, name=name, kind="subscription")
            return
        live, plan = opened
        record = Record(self, op_id, prefix, live.feed, plan, live.convert)
        await self.hub.add(record)
        try:
            # Subscribed first, then read: a change committed in between is held.
            if live.feed.current is not None:
                try:
                    view = await live.feed.current()
                except NotFound:
                    await self.outbox.send(p.complete(op_id).encode())
                    return
                if view is not None:
                    await self.outbox.send(prefix + graphql.first(plan, view, live.convert))
            self._keep(record)
        finally:
            if self.records.get(op_id) is not record:
                self.hub.remove(record)
        self.hub.release(record)

    def _keep(self, record: Record) -> None:
        """A live subscription: from here until `_drop`, a record in the hub."""
        self.records[record.op_id] = record
        metrics.operation(name=record.plan.name, kind="subscription", code="OK", seconds=None)
        metrics.subscription_started(record.plan.field)

    def _drop(self, record: Record) -> None:
        del self.records[record.op_id]
        self.hub.remove(record)
        metrics.subscription_ended(record.plan.field)

    # -- what the hub calls (hub.Subscriber) ------------------------------------------------

    def deliver(self, record: Record, key: str, payload: bytes) -> None:
        if not self.closed:
            self.outbox.offer(record.op_id, key, record.prefix + payload)

    def end(self, record: Record, error: Exception | None = None) -> None:
        """The feed ended (the watcher may no longer see it) or failed: that operation
        alone ends. Queued frames stay ahead of its `complete`."""
        if self.records.get(record.op_id) is not record:
            self.hub.remove(record)
            return
        self._drop(record)
        if error is None:
            message = p.complete(record.op_id)
        else:
            message = p.error(record.op_id, self._errors(error), self.dialect)
        self.outbox.offer(record.op_id, "__end__", message.encode())

    def refresh(self, record: Record) -> None:
        """The broadcast backend reconnected: events may have been missed. The current
        state is read again; events arriving meanwhile are held and follow it."""
        if record.held is not None:
            return  # being set up or re-read right now: that read is fresh enough
        record.held = {}
        self._spawn(self._refresh(record))

    async def _refresh(self, record: Record) -> None:
        current = record.feed.current
        assert current is not None
        try:
            view = await current()
        except AppError:
            record.held = None
            self.end(record)  # e.g. no longer visible
            return
        except Exception as exc:
            if not is_outage(exc):
                record.held = None
                raise
            log.warning("re-reading a live subscription's state failed: %r", exc)
            view = None  # the next RESYNC tries again
        if view is not None and self.records.get(record.op_id) is record:
            payload = self.endpoint.graphql.first(record.plan, view, record.convert)
            self.outbox.offer(record.op_id, REFRESH_KEY, record.prefix + payload)
        self.hub.release(record)  # what was held follows the fresh state
