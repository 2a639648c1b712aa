"""OpenTelemetry (taxi[otel]): a span per GraphQL operation, the SQL statements and
Redis commands of its resolvers below it; set up from the OTEL_* variables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taxi.core import tracing
from taxi.core.config import Settings
from taxi.main import create_app
from tests.helpers import LOG_IN, account, gql


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(settings: Settings, exporter: InMemorySpanExporter) -> AsyncIterator[Any]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        names.append(by_id[parent.span_id].name)
        parent = by_id[parent.span_id].parent
    return names


async def test_operation_span_with_sql_children(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter, settings: Settings
) -> None:
    user = await account(traced)
    exporter.clear()
    body = await gql(traced, LOG_IN, {"username": user.username, "password": "wrong"})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    (operation,) = [s for s in spans if s.name == "mutation LogIn"]
    assert (operation.attributes or {}).get("graphql.outcome") == "UNAUTHENTICATED"
    # Below the HTTP server span of the ASGI instrumentation.
    assert any(name.startswith("POST /graphql") for name in _ancestors(operation, by_id))
    sql = [
        s
        for s in spans
        if s.attributes and s.attributes.get("db.system") in ("postgresql", "sqlite")
    ]
    assert sql, [s.name for s in spans]
    assert all("mutation LogIn" in _ancestors(s, by_id) for s in sql)
    if settings.redis_url:  # the login limiter counts the failure in Redis
        redis = [s for s in spans if (s.attributes or {}).get("db.system") == "redis"]
        assert redis, [s.name for s in spans]
        assert all("mutation LogIn" in _ancestors(s, by_id) for s in redis)


def test_enabled_by_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert tracing.from_env() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    provider = tracing.from_env()
    assert provider is not None
    provider.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.from_env() is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.from_env() is None
