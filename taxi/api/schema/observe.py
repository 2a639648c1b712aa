"""Operation metrics and trace spans, as a Strawberry extension: each operation counted
by name, type and outcome code (queries and mutations timed), each running subscription
counted by root field, and with tracing on, a span around each operation that the SQL
and Redis spans of its resolvers hang below."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, OperationType
from strawberry.extensions import SchemaExtension

from taxi.core import metrics

OK = "OK"


def _kind(ctx: Any) -> str:
    try:
        return str(ctx.operation_type.value)
    except RuntimeError:  # the document did not parse, or names no such operation
        return "unknown"


def _code(ctx: Any) -> str:
    errors = getattr(ctx.result, "errors", None) or ctx.pre_execution_errors or []
    codes = sorted(
        {str((getattr(e, "extensions", None) or {}).get("code", "ERROR")) for e in errors}
    )
    return codes[0] if codes else OK


def _root_fields(ctx: Any) -> list[str]:
    document = ctx.graphql_document
    if document is None:
        return []
    from graphql import get_operation_ast

    op = get_operation_ast(document, ctx.operation_name)
    if op is None or op.operation is not OperationType.SUBSCRIPTION:
        return []
    return [s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)]


class Observe(SchemaExtension):
    def __init__(self, *, tracer: Any = None) -> None:
        self.tracer = tracer
        self._live: list[str] = []
        self._validated = False  # on_execute ran: the document parsed and validated

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        if self.tracer is None:
            try:
                yield
            finally:
                self._ended()
                self._count(start)
            return
        from opentelemetry import context, trace

        span = self.tracer.start_span("graphql.operation", kind=trace.SpanKind.INTERNAL)
        token = context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            self._ended()
            kind, name, code = self._count(start)
            span.update_name(f"{kind} {name}")
            span.set_attribute("graphql.operation.type", kind)
            span.set_attribute("graphql.operation.name", name)
            span.set_attribute("graphql.outcome", code)
            if code != OK:
                span.set_status(trace.Status(trace.StatusCode.ERROR, code))
            span.end()
            context.detach(token)

    def _count(self, start: float) -> tuple[str, str, str]:
        ctx = self.execution_context
        kind, code = _kind(ctx), _code(ctx)
        # A subscription's operation lasts as long as the stream: no latency.
        seconds = None if kind == "subscription" else time.perf_counter() - start
        name = ctx.operation_name
        if self._validated:
            metrics.operation(name=name, kind=kind, code=code, seconds=seconds)
        else:  # junk names never take a label slot from real operations
            metrics.refused(name=name, kind=kind, code=code)
        return kind, metrics.operation_name(name, validated=self._validated), code

    def on_execute(self) -> Iterator[None]:
        # Parsed and validated by now. A subscription is live from here until its
        # operation ends (on_operation's exit: the stream ended or was stopped).
        self._validated = True
        self._live = _root_fields(self.execution_context)
        for field in self._live:
            metrics.subscription_started(field)
        yield

    def _ended(self) -> None:
        for field in self._live:
            metrics.subscription_ended(field)
        self._live = []
