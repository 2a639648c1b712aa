"""graphql-core's executor without the reference cycle each execution made (graphql-core
is bounded in pyproject.toml; tests/test_adapters.py fails when this moves).

graphql-core 3.3's `Executor` hands resolvers two of its own bound methods
(`async_helpers`: `gather_async_work`, `track_async_work`), so every executor is a
reference cycle with all it holds: its context (the request, the socket's objects),
variables, collected fields and errors, ~120 objects an execution. Reference counting
never frees one; only a collection that walks it does. A serving process freezes what
survived each full collection (taxi.core.gcpolicy), so an execution under way at that
moment (a mutation waiting for PostgreSQL) became frozen garbage that only a walk of
the whole heap frees: ~12 executors a second at rush hour (bench.rush, 2026-12-06), the
largest share of the heap's slow growth. `Acyclic` hands resolvers the same methods
through weak references: the executor is freed as its last frame returns.

The documented seam (`executor_class`, `Executor.build`'s `cls`) makes the executor;
the attribute it replaces and the methods behind it are graphql-core's internals."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import Executor, GraphQLResolveInfoHelpers

T = TypeVar("T")


def _weakly(method: Callable[[Any], T]) -> Callable[[Any], T]:
    """`method`, bound to its object through a weak reference."""
    ref = weakref.WeakMethod(method)

    def call(values: Any) -> T:
        bound = ref()
        if bound is None:  # a resolver outliving its execution
            raise RuntimeError("the execution this resolver belonged to has ended")
        return bound(values)

    return call


class Acyclic(Executor[Any]):
    """graphql-core's plain executor (no @defer/@stream: the schema has neither), its
    resolvers' helpers bound weakly. Pass as `executor_class`, or call `Acyclic.build`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=_weakly(self.gather_async_work), track=_weakly(self.track_async_work)
        )
