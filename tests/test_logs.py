"""Structured logs: one JSON line per operation, every line with its request id."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from taxi.core import metrics
from taxi.core.logs import JsonFormatter
from tests.helpers import account, endpoint, gql
from tests.live import LiveServer
from tests.ws import session

ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
REPORT = "mutation Report($p: LocationInput!) { updatePosition(position: $p) { availability } }"
WHERE = {"latitude": 52.5, "longitude": 13.4}


async def test_one_json_line_per_operation_with_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    rider = await account(client)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taxi.operation"):
        response = await client.post(
            "/graphql",
            json={"query": "query Who { me { id } }"},
            headers={"Authorization": f"Bearer {rider.access}", "X-Request-ID": "req-42"},
        )
        anonymous = await client.post("/graphql", json={"query": "query Who { me { id } }"})
    assert response.headers["x-request-id"] == "req-42"
    generated = anonymous.headers["x-request-id"]
    assert len(generated) == 32

    records = [r for r in caplog.records if r.name == "taxi.operation"]
    assert len(records) == 2
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    ok, failed = lines
    assert ok["operation"] == "Who" and ok["type"] == "query" and ok["outcome"] == "ok"
    assert ok["request_id"] == "req-42"
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] >= 0
    assert failed["outcome"] == "error" and failed["codes"] == ["UNAUTHENTICATED"]
    assert failed["request_id"] == generated


async def test_mutations_log_their_name_but_never_their_variables(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        rider = await account(client)
        await gql(client, "{ me { id } }", token=rider.access)
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert '"operation": "LogIn"' in text.replace('":"', '": "')
    assert rider.access not in text and rider.refresh not in text
    assert "correct-horse-9" not in text


async def test_position_reports_are_tallied_not_logged_each(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of reports a second get no line each (~80 µs apiece): one line per
    period gives their count; an error still gets its own line."""
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        await gql(client, ONLINE, {"p": WHERE}, token=driver.access)
    executor = endpoint(server.app).executor
    executor.tally.flush()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taxi.operation"):
        async with session(server.ws_url, driver.access) as ws:
            for n in range(3):
                await ws.subscribe(str(n), REPORT, {"p": WHERE})
                assert (await ws.recv())["type"] == "next"
                assert await ws.recv() == {"id": str(n), "type": "complete"}
            await ws.subscribe("bad", REPORT, {"p": {**WHERE, "latitude": 91}})
            assert (await ws.recv())["payload"]["errors"][0]["extensions"]["code"] == (
                "BAD_USER_INPUT"
            )
        lines = [r for r in caplog.records if r.name == "taxi.operation"]
        assert [(r.getMessage(), getattr(r, "codes", None)) for r in lines] == [
            ("operation", ["BAD_USER_INPUT"])
        ]
        executor.tally.flush()
    tallied = [r for r in caplog.records if r.getMessage() == "operations"]
    # Its metric label: "other" once earlier tests in this process took every slot.
    label = metrics.operation_name("Report")
    assert [(getattr(r, "operation", None), getattr(r, "count", None)) for r in tallied] == [
        (label, 3)
    ]
