"""Shared execution of subscription events.

Strawberry executes a subscription's selection set once per subscriber per event
(~50 µs each): 10,000 watchers of one trip would cost half a second of CPU per change.
Here subscribers whose event payload is the same object and whose operation and
variables are the same share ONE execution result: the first of them executes, the
others reuse it. The live layer makes the payload the same object for everyone who may
see the same state (see `shared_trip`), so visibility is part of the key by construction.

Safe because the types reachable from Subscription read only their parent object, never
the per-subscriber context."""

from __future__ import annotations

import weakref
from typing import Any

import orjson
from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# id(payload) -> {(operation id, variables): result}. Payloads are dataclasses that
# compare by value (unhashable), so they are keyed by identity; an entry is dropped when
# its payload dies.
_results: dict[int, dict[tuple[int, bytes], ExecutionResult]] = {}


class _Cached:
    __slots__ = ("result",)

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, *_args: Any) -> ExecutionResult:
        return self.result


class _Recording:
    __slots__ = ("executor", "key", "memo")

    def __init__(self, executor: Any, memo: dict[Any, ExecutionResult], key: Any) -> None:
        self.executor = executor
        self.memo = memo
        self.key = key

    def execute_operation(self, *args: Any) -> Any:
        result = self.executor.execute_operation(*args)
        if isinstance(result, ExecutionResult):  # sync: our payload types never await
            self.memo[self.key] = result
        return result


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    _share_key: tuple[int, bytes] | None = None

    def _key(self) -> tuple[int, bytes]:
        if self._share_key is None:
            coerced = getattr(self.variable_values, "coerced", self.variable_values) or {}
            # The parser cache hands every identical document the same AST, so the
            # operation node's identity stands for the document and operation name.
            self._share_key = (
                id(self.operation),
                orjson.dumps(coerced, option=orjson.OPT_SORT_KEYS, default=str),
            )
        return self._share_key

    def build_per_event_executor(self, payload: Any) -> Any:
        memo = _results.get(id(payload))
        if memo is None:
            try:
                weakref.finalize(payload, _results.pop, id(payload), None)
            except TypeError:  # not weak-referenceable: nothing to share
                return super().build_per_event_executor(payload)
            memo = _results[id(payload)] = {}
        key = self._key()
        if (cached := memo.get(key)) is not None:
            return _Cached(cached)
        return _Recording(super().build_per_event_executor(payload), memo, key)
