"""The operation log line for operations Strawberry executes, as a schema extension (the
line itself, shared with the paths that answer without Strawberry, is taxi/core/logs.py's
`operation_line`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from taxi.core.logs import operation_line


class OperationLog(SchemaExtension):
    """One line per GraphQL operation: name, type, duration and outcome."""

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        ctx = self.execution_context
        result = ctx.result
        errors = getattr(result, "errors", None) or ctx.pre_execution_errors or []
        codes = sorted(
            {str((getattr(e, "extensions", None) or {}).get("code", "ERROR")) for e in errors}
        )
        try:
            kind = ctx.operation_type.value
        except RuntimeError:
            kind = "unknown"
        operation_line(ctx.operation_name, kind, time.perf_counter() - start, codes)
