"""Optional OpenTelemetry tracing (`pip install taxi[otel]`), set up from the standard
OTEL_* variables: a server span per HTTP request (the ASGI instrumentation), a span
per GraphQL operation (taxi.api.executor) and, below it, a span per SQL statement
and per Redis command (the official SQLAlchemy and redis instrumentations).

On when the OpenTelemetry packages are importable, OTEL_SDK_DISABLED is not true and
an exporter is named: OTEL_TRACES_EXPORTER (`otlp`, `console`), or an OTLP endpoint
(OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The exporter
reads the rest of its OTEL_* settings itself; OTEL_SERVICE_NAME defaults to "taxi"."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SERVICE_NAME = "taxi"
_TRUE = {"1", "true", "yes"}


def available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in (
            "opentelemetry.sdk",
            "opentelemetry.instrumentation.asgi",
            "opentelemetry.instrumentation.sqlalchemy",
            "opentelemetry.instrumentation.redis",
        )
    )


def _exporter_name() -> str | None:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").lower() in _TRUE:
        return None
    name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name:
        return None if name == "none" else name
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def from_env() -> Any:
    """A TracerProvider exporting as the environment says, or None (tracing off)."""
    name = _exporter_name()
    if name is None:
        return None
    if not available():
        log.warning("OTEL_* asks for traces but taxi[otel] is not installed; tracing off")
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter: Any
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console); tracing off", name)
        return None
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@contextmanager
def instrumented(provider: Any) -> Iterator[None]:
    """SQL and Redis spans while open: engines created inside get an EngineTracer (the
    instrumentation wraps `create_async_engine`), Redis clients are patched by class."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    sql, redis = SQLAlchemyInstrumentor(), RedisInstrumentor()
    # The instrumentation declares SQLAlchemy < 2.1; the engine events it uses are
    # unchanged in 2.1 (tests/test_tracing.py checks the SQL spans).
    sql.instrument(tracer_provider=provider, skip_dep_check=True)
    redis.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        sql.uninstrument()
        redis.uninstrument()
        provider.force_flush()


def tracer(provider: Any) -> Any:
    return provider.get_tracer("taxi")


class HttpTracing:
    """The ASGI instrumentation's server span, for HTTP only: on a WebSocket it would
    open a span per frame sent or received."""

    def __init__(self, app: ASGIApp, *, provider: Any) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        self.app = app
        self.traced = OpenTelemetryMiddleware(
            app, tracer_provider=provider, exclude_spans=["receive", "send"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.traced(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class OperationSpan:
    """The span around one GraphQL operation (taxi/api/executor.py opens it), current
    while the operation runs, so the SQL and Redis spans of its work hang below it."""

    __slots__ = ("_span", "_token")

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace

        self._span = tracer.start_span("graphql.operation", kind=trace.SpanKind.INTERNAL)
        self._token = context.attach(trace.set_span_in_context(self._span))

    def end(self, *, kind: str, name: str, code: str) -> None:
        from opentelemetry import context, trace

        span = self._span
        span.update_name(f"{kind} {name}")
        span.set_attribute("graphql.operation.type", kind)
        span.set_attribute("graphql.operation.name", name)
        span.set_attribute("graphql.outcome", code)
        if code != "OK":
            span.set_status(trace.Status(trace.StatusCode.ERROR, code))
        span.end()
        context.detach(self._token)
