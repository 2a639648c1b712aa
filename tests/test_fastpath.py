"""updatePosition over a socket answered by its direct handler
(taxi/api/strategies/position.py): the same answers, the same errors, as graphql-core's
execution, and the report stored once (never run twice)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.rush_load import UPDATE_QUERY as BENCH_UPDATE
from taxi.api.build import build_schema
from taxi.api.prepared import DocumentCache
from taxi.api.strategies.position import PositionReport
from taxi.api.strawberry_adapter import core_schema
from taxi.core.config import Settings
from taxi.domain.services import drivers
from tests.backends import base_settings, sub_prefix
from tests.helpers import account, gql
from tests.live import LiveServer
from tests.ws import WsClient, session

FAST = """mutation Where($p: LocationInput!) {
  car: updatePosition(position: $p) {
    __typename state: availability
    position { __typename latitude lat2: latitude longitude heading recordedAt } } }"""
# The same request with a directive: not a plan, so it runs the full GraphQL way.
FULL = FAST.replace("state: availability", "state: availability @include(if: true)")
ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
WHERE = {"latitude": 52.5, "longitude": 13.4, "heading": 90}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Own position keys: user ids restart in every test, positions are shared Redis."""
    return base_settings(
        **{
            **settings.model_dump(include={"database_url", "redis_url", "media_root"}),
            "channel_prefix": sub_prefix("fast"),
        }
    )


def test_what_is_recognised() -> None:
    documents = DocumentCache(core_schema(build_schema()), introspection=True)

    def recognised(query: str) -> bool:
        prepared = documents.get(query)
        operation = prepared.operation(None)
        if operation is None or prepared.validation_errors:
            return False
        return PositionReport.recognise(operation) is not None

    assert recognised(FAST)
    assert recognised(BENCH_UPDATE)
    for other in (
        FULL,
        FAST.replace("mutation", "query"),
        FAST.replace("LocationInput!", "LocationInput"),
        "mutation { updatePosition(position: {latitude: 1, longitude: 2}) { availability } }",
        FAST.replace("lat2: latitude", "latitude: longitude"),  # one key, two fields
        FAST.replace("heading", "heading { x }"),
        FAST.replace("__typename state", "...on DriverState { availability } state"),
        "mutation M($p: LocationInput!) { goOnline(position: $p) { availability } }",
    ):
        assert not recognised(other), other


async def _run(ws: WsClient, op: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    await ws.subscribe(op, query, variables)
    message = await ws.recv()
    assert message.get("id") == op, message
    if message["type"] == "next":
        assert await ws.recv() == {"id": op, "type": "complete"}
    return message


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the rule ran, and how often the direct handler answered."""
    counted = {"rule": 0, "direct": 0}
    rule, direct = drivers.update_position, PositionReport.run

    async def counted_rule(**kwargs: Any) -> Any:
        counted["rule"] += 1
        return await rule(**kwargs)

    async def counted_direct(self: PositionReport, *args: Any) -> Any:
        result = await direct(self, *args)
        counted["direct"] += result is not None
        return result

    monkeypatch.setattr(drivers, "update_position", counted_rule)
    monkeypatch.setattr(PositionReport, "run", counted_direct)
    return counted


def _without_time(message: dict[str, Any]) -> dict[str, Any]:
    data = message["payload"]["data"]
    position = data["car"]["position"]
    assert position.pop("recordedAt").endswith("+00:00")
    return message


async def test_answers_like_the_full_path(server: LiveServer, calls: dict[str, int]) -> None:
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        await gql(client, ONLINE, {"p": WHERE}, token=driver.access)
    calls.update(rule=0, direct=0)
    async with session(server.ws_url, driver.access) as ws:
        fast = _without_time(await _run(ws, "1", FAST, {"p": {**WHERE, "latitude": 52}}))
        assert calls == {"rule": 1, "direct": 1}
        full = _without_time(await _run(ws, "2", FULL, {"p": {**WHERE, "latitude": 52}}))
        assert calls == {"rule": 2, "direct": 1}
    assert (
        fast["payload"]
        == full["payload"]
        == {
            "data": {
                "car": {
                    "__typename": "DriverState",
                    "state": "AVAILABLE",
                    "position": {
                        "__typename": "Location",
                        "latitude": 52.0,
                        "lat2": 52.0,
                        "longitude": 13.4,
                        "heading": 90.0,
                    },
                }
            }
        }
    )


@pytest.mark.parametrize(
    ("who", "position", "code"),
    [
        ("driver", WHERE, "CONFLICT"),  # offline
        ("rider", WHERE, "FORBIDDEN"),
        ("online", {**WHERE, "latitude": 91}, "BAD_USER_INPUT"),
        ("online", {**WHERE, "heading": True}, None),  # not a Float: a validation error
        ("online", {**WHERE, "extra": 1}, None),
    ],
)
async def test_errors_are_the_full_paths(
    server: LiveServer,
    calls: dict[str, int],
    who: str,
    position: dict[str, Any],
    code: str | None,
) -> None:
    async with server.http() as client:
        user = await account(client, "RIDER" if who == "rider" else "DRIVER")
        if who == "online":
            await gql(client, ONLINE, {"p": WHERE}, token=user.access)
    calls.update(rule=0, direct=0)  # going online stored a position too
    async with session(server.ws_url, user.access) as ws:
        fast = await _run(ws, "1", FAST, {"p": position})
        # The rule ran once (its error answered by the direct handler) or, for input
        # graphql-core refuses, never: nothing runs twice.
        ran = calls["rule"]
        assert ran == (1 if code else 0), calls
        assert calls["direct"] == ran, calls  # answered: the error payload is its own
        full = await _run(ws, "2", FULL, {"p": position})
    assert fast["type"] == full["type"], (fast, full)
    if fast["type"] == "next":
        assert fast["payload"] == full["payload"]
        errors = fast["payload"]["errors"]
    else:
        assert fast["payload"] == full["payload"]
        errors = fast["payload"]
    assert errors, fast
    assert errors[0].get("extensions", {}).get("code") == code or code is None, errors
