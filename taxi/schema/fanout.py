"""Shared execution of subscription events.

Strawberry executes a subscription's selection set once per subscriber per event
(~50 µs each): 10,000 watchers of one trip would cost half a second of CPU per change.
Here subscribers whose event payload is the same object and whose operation and
variables are the same share ONE execution result: the first of them executes, the
others reuse it. The live layer makes the payload the same object for everyone who may
see the same state (`shared_object`: one GraphQL object per decoded view), so
visibility is part of the key by construction.

Safe because the types reachable from Subscription read only their parent object, never
the per-subscriber context.

Past the shared execution, Strawberry still spent ~100 µs per subscriber per event on
its stream machinery (a task switch, the graphql-core map iterator, result handling,
extension hooks, message dicts, JSON encoding). Frames skip all of it: the WebSocket
handlers name the operation's socket and id (`Sink`, set in the operation's own task),
the shared result is encoded once per (event, document, variables), and a subscriber
only joins its frame prefix to that text. `sender` gives the live streams a send the
hub's pump runs inline (taxi/hub.py); `deliver` is the same from the operation's task
(first states, resyncs, what queued behind a slow socket). A result with errors or
extensions takes the normal path, where Strawberry formats, masks and logs them."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from graphql import ExecutionResult
from starlette.types import Message
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from taxi import metrics

T = TypeVar("T")
Send = Coroutine[Any, Any, None]


@dataclass(slots=True)
class Sink:
    """Where the current subscription operation's frames go: set by the WebSocket
    handler in the operation's task, so it is this operation's alone."""

    # The socket's ASGI send: an async function (the hub steps its coroutine).
    send: Callable[[Message], Send]
    prefix: str  # the frame up to its payload: '{"id":"1","type":"next","payload":'
    executor: SharedEventExecutor | None = None
    # False from the moment the client stops the operation (or the socket goes): its
    # task is cancelled only later, and the client may already reuse the id.
    live: bool = True


current_sink: ContextVar[Sink | None] = ContextVar("taxi_sink", default=None)


def frame_prefix(operation_id: str, *, legacy: bool) -> str:
    quoted = orjson.dumps(operation_id).decode()
    if legacy:
        return '{"type":"data","id":' + quoted + ',"payload":'
    return '{"id":' + quoted + ',"type":"next","payload":'


def _frame(sink: Sink, payload: Any) -> str | None:
    """The operation's next frame for `payload`; None when it must take the normal path
    (a result with errors or extensions, which Strawberry formats, masks and logs)."""
    if not sink.live or sink.executor is None:
        return None
    shared = sink.executor.shared(payload)
    if shared is None or shared.result.errors or shared.result.extensions:
        return None
    if shared.encoded is None:
        shared.encoded = orjson.dumps({"data": shared.result.data}).decode() + "}"
    return sink.prefix + shared.encoded


def _send(sink: Sink, payload: Any) -> Send | None:
    """The operation's next frame for `payload` as an unstarted send, or None."""
    text = _frame(sink, payload)
    if text is None:
        return None
    metrics.delivered()
    return sink.send({"type": "websocket.send", "text": text})


async def deliver(payload: Any) -> bool:
    """Send `payload` as the current operation's next frame, executed and encoded once
    for every subscriber of the same (payload, document, variables). False when the
    caller must yield it the normal way."""
    sink = current_sink.get()
    sent = None if sink is None else _send(sink, payload)
    if sent is None:
        return False
    await sent
    return True


def sender(convert: Callable[[Any], Any]) -> Callable[[Any], Send | None] | None:
    """For the live streams' inline delivery (taxi/hub.py): a view in, the current
    operation's frame send out (None: take the normal path). Taken in the operation's
    task, where the sink is set; called later from the hub's pump, where it is not."""
    sink = current_sink.get()
    if sink is None:
        return None
    return lambda view: _send(sink, shared_object(view, convert))


# One GraphQL object per view: every subscriber of an event then yields the SAME payload
# object, which is what lets subscribers share one execution. Keyed by the view's
# identity (views compare by value and are unhashable); dropped when the view dies.
_objects: dict[int, Any] = {}


def shared_object(view: Any, convert: Callable[[Any], T]) -> T:
    key = id(view)
    obj = _objects.get(key)
    if obj is None:
        obj = _objects[key] = convert(view)
        weakref.finalize(view, _objects.pop, key, None)
    return obj  # type: ignore[no-any-return]


class _Shared:
    __slots__ = ("encoded", "result")

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        self.encoded: str | None = None


# id(payload) -> {(operation id, variables): result}. Payloads are dataclasses that
# compare by value (unhashable), so they are keyed by identity; an entry is dropped when
# its payload dies.
_results: dict[int, dict[tuple[int, str], _Shared]] = {}


class _Cached:
    __slots__ = ("shared",)

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared

    def execute_operation(self, *_args: Any) -> ExecutionResult:
        return self.shared.result


class _Recording:
    __slots__ = ("executor", "key", "memo")

    def __init__(self, executor: Any, memo: dict[Any, _Shared], key: Any) -> None:
        self.executor = executor
        self.memo = memo
        self.key = key

    def execute_operation(self, *args: Any) -> Any:
        result = self.executor.execute_operation(*args)
        if isinstance(result, ExecutionResult):  # sync: our payload types never await
            self.memo[self.key] = _Shared(result)
        return result


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    _share_key: tuple[int, str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The operation's executor (per-event ones are copies, not constructed).
        if (sink := current_sink.get()) is not None and sink.executor is None:
            sink.executor = self

    def _key(self) -> tuple[int, str]:
        if self._share_key is None:
            coerced = getattr(self.variable_values, "coerced", self.variable_values) or {}
            # The parser cache hands every identical document the same AST, so the
            # operation node's identity stands for the document and operation name.
            # Decoded: orjson's bytes keep a 4 KiB buffer, per live subscription here.
            self._share_key = (
                id(self.operation),
                orjson.dumps(coerced, option=orjson.OPT_SORT_KEYS, default=str).decode(),
            )
        return self._share_key

    def shared(self, payload: Any) -> _Shared | None:
        """The shared result of this operation for `payload`, executed if need be."""
        memo = _results.get(id(payload))
        if memo is not None and (shared := memo.get(self._key())) is not None:
            return shared  # every subscriber but the first, per event: keep it short
        executor = self.build_per_event_executor(payload)
        if not isinstance(executor, _Recording):
            return None  # a payload that cannot be shared
        executor.execute_operation(False)
        # Absent if it awaited: never for our payload types, they resolve synchronously.
        return executor.memo.get(executor.key)

    def build_per_event_executor(self, payload: Any) -> Any:
        memo = _results.get(id(payload))
        if memo is None:
            try:
                weakref.finalize(payload, _results.pop, id(payload), None)
            except TypeError:  # not weak-referenceable: nothing to share
                return super().build_per_event_executor(payload)
            memo = _results[id(payload)] = {}
        key = self._key()
        if (shared := memo.get(key)) is not None:
            return _Cached(shared)
        return _Recording(super().build_per_event_executor(payload), memo, key)
