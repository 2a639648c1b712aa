"""One socket's operations: queries and mutations while they run, live subscriptions
as records in the hub (taxi/transport/live/hub.py), and what the hub calls back.

An operation (a query, a mutation, or setting a subscription up) runs in a task of its
own while it runs, so a slow query never holds up the socket's pings. A subscription
then becomes a record and its task ends: a socket holds records, not tasks. What the
client may see, and when, is the feed's business (taxi/domain/services/live.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from functools import partial
from typing import Any

import orjson
from graphql import GraphQLError

from taxi.api.answer import Answer, BadRequest
from taxi.api.context import Context
from taxi.api.executor import Executor
from taxi.api.schema.errors import is_outage
from taxi.api.strategies.live import LiveQuery
from taxi.core import metrics
from taxi.core.overload import LOAD
from taxi.core.tasks import stop_all
from taxi.domain.errors import AppError, NotFound
from taxi.transport.live import protocol as p
from taxi.transport.live.hub import Hub, Record
from taxi.transport.live.turns import Turns
from taxi.transport.live.wire import Gone, Outbox, unless_gone

log = logging.getLogger("taxi.transport.live")

REFRESH_KEY = "__current__"  # the outbox key of a state re-read after a reconnect
# Pauses between attempts to re-read a live subscription's state after a reconnect while
# a backend is still down (~30 s in all; the last attempt's failure gives up).
REREAD_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 0.0)
# Queries and mutations executing at once per socket (PROTOCOL.md "Overload"); later ones
# wait their turn in order, still counted against the 100 in flight.
MAX_EXECUTING = 8


class Operations:
    __slots__ = (
        "_tasks",
        "_turns",
        "closed",
        "context",
        "dialect",
        "executor",
        "hub",
        "outbox",
        "records",
        "reporting",
        "running",
    )

    def __init__(
        self, executor: Executor, hub: Hub, context: Context, outbox: Outbox, dialect: p.Dialect
    ) -> None:
        self.executor = executor
        self.hub = hub
        self.context = context
        self.outbox = outbox
        self.dialect = dialect
        self.records: dict[str, Record] = {}
        self.running: dict[str, asyncio.Task[None]] = {}  # being set up, or running
        # Submitted without a task (position reports), until their batch answers them;
        # the value tells a stopped operation's answer from a later one's of the same id.
        self.reporting: dict[str, object] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # re-reads after a reconnect; answers
        self._turns = Turns(MAX_EXECUTING)
        self.closed = False

    def __contains__(self, op_id: str) -> bool:
        return op_id in self.records or op_id in self.running or op_id in self.reporting

    def __len__(self) -> int:
        return len(self.records) + len(self.running) + len(self.reporting)

    def start(self, op_id: str, payload: dict[str, Any]) -> None:
        """Operations take their turns in the order they arrive: here, not once their
        task first runs (a report that arrived later would take a turn before them)."""
        if not self._turns.try_take():
            self.running[op_id] = asyncio.create_task(self._operation(op_id, payload))
            return  # it waits for a turn
        # A position report is answered from its batch, without a task of its own (the
        # executor says whether this is one); anything else runs in a task.
        ticket = self.reporting[op_id] = object()
        LOAD.started()
        submitted = self.executor.submit(
            self.context, payload, partial(self._answered, op_id, ticket)
        )
        if submitted:
            return
        del self.reporting[op_id]
        LOAD.finished()
        task = self.running[op_id] = asyncio.create_task(self._operation(op_id, payload, turn=True))
        # Its turn ends with the task, however it ends (even cancelled before it started).
        task.add_done_callback(self._give)

    def _give(self, _task: asyncio.Task[None]) -> None:
        self._turns.give()

    def _answered(self, op_id: str, ticket: object, answer: Answer | None) -> None:
        """A submitted operation's answer (None: the process is stopping)."""
        LOAD.finished()
        self._turns.give()
        if self.reporting.get(op_id) is not ticket:
            return  # stopped meanwhile, or the socket closed
        del self.reporting[op_id]
        if answer is None or self.closed:
            return
        frames = self._frames(op_id, answer)
        if not self.outbox.write_now(*frames):
            self._spawn(self.outbox.send(*frames))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(unless_gone(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The socket is gone: every record leaves the hub, every task ends."""
        self.closed = True
        self.reporting.clear()
        for record in list(self.records.values()):
            self._drop(record)
        await stop_all([*self.running.values(), *self._tasks])

    async def stop(self, op_id: str, *, quiet: bool = False) -> None:
        record = self.records.get(op_id)
        if record is not None:
            self._drop(record)
            self.outbox.forget(op_id)
        task = self.running.pop(op_id, None)
        if task is not None:
            task.cancel()
            # Held until it has unwound (`close` awaits it too): a pending task that
            # nothing references may be destroyed mid-cleanup.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        submitted = self.reporting.pop(op_id, None)  # its answer will find it gone
        if self.dialect.legacy and not quiet and (record or task or submitted):
            await self.outbox.send(p.complete(op_id).encode())

    async def _operation(self, op_id: str, payload: dict[str, Any], *, turn: bool = False) -> None:
        """`turn`: it holds one already (given back when its task is done), else it waits
        for one here."""
        LOAD.started()  # queued work, waiting for its turn included (taxi.core.overload)
        try:
            if turn:
                await self._run(op_id, payload)
            else:
                await self._turns.take()
                try:
                    await self._run(op_id, payload)
                finally:
                    self._turns.give()
        except Gone:
            pass  # the socket closed under the operation: its receive loop cleans up
        except Exception as exc:  # noqa: BLE001 - an operation's failure ends it alone
            if not self.closed:
                with suppress(Gone):
                    await self._fail(op_id, exc)
        finally:
            LOAD.finished()
            if self.running.get(op_id) is asyncio.current_task():
                del self.running[op_id]

    def _errors(self, exc: Exception) -> list[dict[str, Any]]:
        """The client's view of `exc`: its code (an outage: SERVICE_UNAVAILABLE), logged
        and masked when it is a bug (taxi/api/schema/errors.py)."""
        error = GraphQLError(str(exc), original_error=exc)
        return [dict(e.formatted) for e in self.executor.coded([error])]

    async def _fail(self, op_id: str, exc: Exception) -> None:
        await self.outbox.send(p.error(op_id, self._errors(exc), self.dialect).encode())

    async def _run(self, op_id: str, payload: dict[str, Any]) -> None:
        try:
            answer = await self.executor.run(
                self.context,
                query=payload.get("query"),
                variables=payload.get("variables"),
                operation_name=payload.get("operationName"),
                extensions=payload.get("extensions"),
            )
        except BadRequest as exc:
            error = GraphQLError(exc.message, extensions=exc.extensions)
            answer = Answer(None, [error], executed=False)
        if answer.live is None:  # a query or mutation, or refused before it ran
            await self.outbox.send(*self._frames(op_id, answer))
            return
        prefix = p.frame_prefix(op_id, self.dialect)
        live, query = answer.live
        record = Record(self, op_id, prefix, live.feed, query)
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
                    await self.outbox.send(prefix + self._first(query, view))
            self._keep(record)
        finally:
            if self.records.get(op_id) is not record:
                self.hub.remove(record)
        self.hub.release(record)

    def _frames(self, op_id: str, answer: Answer) -> tuple[bytes, ...]:
        """A query's or mutation's answer: its result and `complete`; refused before it
        ran, an `error` message (the socket stays open)."""
        if not answer.executed:
            errors = [dict(e.formatted) for e in answer.errors or ()]
            return (p.error(op_id, errors, self.dialect).encode(),)
        body: dict[str, Any] = {"data": answer.data}
        if answer.errors:
            body["errors"] = [dict(e.formatted) for e in answer.errors]
        prefix = p.frame_prefix(op_id, self.dialect)
        return prefix + orjson.dumps(body) + b"}", p.complete(op_id).encode()

    def _first(self, query: LiveQuery, view: Any) -> bytes:
        """A subscriber's own first state (or one re-read after a reconnect)."""
        return query.payload(view, mask_internal=self.executor.mask_internal)

    def _keep(self, record: Record) -> None:
        """A live subscription: from here until `_drop`, a record in the hub."""
        self.records[record.op_id] = record
        metrics.subscription_started(record.query.field)

    def _drop(self, record: Record) -> None:
        del self.records[record.op_id]
        self.hub.remove(record)
        metrics.subscription_ended(record.query.field)

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
        view = None
        for delay in REREAD_DELAYS:
            try:
                view = await current()
                break
            except AppError:
                record.held = None
                self.end(record)  # e.g. no longer visible
                return
            except Exception as exc:
                if not is_outage(exc):
                    record.held = None
                    raise
                # Right after a failover the state's own stores may still be failing
                # over; no further RESYNC may come (the channel's shard is back), so
                # this read is tried again, events held meanwhile (bounded).
                log.warning("re-reading a live subscription's state failed: %r", exc)
            if self.records.get(record.op_id) is not record:
                break  # stopped meanwhile
            await asyncio.sleep(delay)
        if view is not None and self.records.get(record.op_id) is record:
            payload = self._first(record.query, view)
            self.outbox.offer(record.op_id, REFRESH_KEY, record.prefix + payload)
        self.hub.release(record)  # what was held follows the fresh state
