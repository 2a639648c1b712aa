"""How the executor answers a validated operation (taxi/api/executor.py picks one per
document and operation, once):

- reads.py    — a compiled plan for recognised read-only queries (no per-field execution;
                render.py writes its renderers)
- position.py — a direct handler for the hot `updatePosition` report
- general.py  — graphql-core's execution, for everything else
- live.py     — a subscription's per-event execution, shared by its subscribers

A strategy gets a parsed, validated document and never parses or validates; one that
cannot answer returns None before any side effect, and the next one answers."""

from __future__ import annotations

from typing import Any, Protocol

from graphql import ExecutionResult

from taxi.api.context import Context


class Strategy(Protocol):
    kind: str  # what the executor's metric, log line and span call it

    async def run(
        self, context: Context, variables: dict[str, Any] | None
    ) -> ExecutionResult | None: ...
