"""Document limits (PROTOCOL.md "Limits"): refused with HTTP 400 before anything executes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from taxi.api.context import Context
from tests.helpers import account, error_code, gql, ok
from tests.live import LiveServer
from tests.ws import session

# No valid selection in this schema is deeper than 5, and introspection (GraphiQL's own
# query is deep) is exempt: 11 levels under `me`, each also an unknown field.
DEEP = "{ me { " + "a { " * 10 + "b" + " }" * 10 + " } }"
ALIASES = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }"
TOKENS = "{ me { " + " ".join(["id"] * 2100) + " } }"


@pytest.fixture
def me_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts resolver executions (each starts by asking who the caller is): a refused
    document must run none."""
    calls: list[int] = []
    real = Context.user

    async def counting(self: Context) -> Any:
        calls.append(1)
        return await real(self)

    monkeypatch.setattr(Context, "user", counting)
    return calls


async def test_at_the_limits_it_runs(client: httpx.AsyncClient, me_calls: list[int]) -> None:
    fifteen = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(15)) + " }"
    response = await client.post("/graphql", json={"query": fifteen})
    assert response.status_code == 200
    assert error_code(response.json()) == "UNAUTHENTICATED"  # it executed
    assert len(me_calls) == 15


# Documents under the token limit whose validation cost grew quadratically (fields compared
# pairwise), exponentially (a fragment spreading the next three: strawberry's depth and alias
# walks expand every path) or factorially (fragments spreading each other) — each refused by
# the size limits before any other rule walks it (figures in taxi/api/schema/limits.py).
def _spreads(names: list[str]) -> str:
    return " ".join(f"...{n}" for n in names)


MANY_FRAGMENTS = (
    "{ me { "
    + _spreads([f"F{i}" for i in range(21)])
    + " } } "
    + " ".join(f"fragment F{i} on User {{ id }}" for i in range(21))
)
FRAGMENT_FAN = "{ me { ...F0 } } " + " ".join(
    f"fragment F{i} on User {{ id {_spreads([f'F{j}' for j in range(i + 1, min(i + 4, 20))])} }}"
    for i in range(20)
)
CYCLES = " ".join(
    f"fragment F{i} on User {{ id {_spreads([f'F{j}' for j in range(12) if j != i])} }}"
    for i in range(12)
)
FRAGMENT_CYCLES = "{ me { ...F0 } } " + CYCLES
SAME_FIELD = "{ me { " + " id" * 15 + " } }"  # 105 pairs compared
SAME_FIELD_NESTED = "{ trips { " + " edges { node { id } }" * 15 + " } }"


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (DEEP, "exceeds maximum operation depth of 10"),
        (ALIASES, "Allowed: 15"),
        (TOKENS, "2000"),
        (MANY_FRAGMENTS, "at most 20 fragments"),
        (FRAGMENT_FAN, "at most 500 fields"),
        (FRAGMENT_CYCLES, "within itself"),
        (SAME_FIELD, "at most 100 pairs"),
        (SAME_FIELD_NESTED, "at most 100 pairs"),
    ],
    ids=["depth", "aliases", "tokens", "fragments", "fan", "cycles", "pairs", "pairs-nested"],
)
async def test_over_a_limit_is_refused_before_execution(
    http: httpx.AsyncClient, me_calls: list[int], document: str, words: str
) -> None:
    response = await http.post("/graphql", json={"query": document})
    assert response.status_code == 400
    body = response.json()
    assert body.get("data") is None
    assert error_code(body) in {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
    assert any(words in e["message"] for e in body["errors"]), body
    assert me_calls == []


async def test_within_the_size_limits_fragments_run(
    http: httpx.AsyncClient, me_calls: list[int]
) -> None:
    rider = await account(http)
    twenty = (
        "{ me { "
        + _spreads([f"F{i}" for i in range(20)])
        + " } } "
        + " ".join(
            f"fragment F{i} on User {{ {('id', 'username', 'group', 'firstName')[i % 4]} }}"
            for i in range(20)
        )
    )
    data = await ok(http, twenty, {}, rider)
    assert data["me"]["username"] == rider.username
    assert set(data["me"]) == {"id", "username", "group", "firstName"}
    fourteen = await ok(http, "{ me { " + " id" * 14 + " } }", {}, rider)
    assert fourteen["me"]["id"] == rider.id
    assert me_calls  # both executed


async def test_graphiqls_introspection_is_within_the_size_limits(
    http: httpx.AsyncClient,
) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = await gql(http, query)
    assert "errors" not in body, body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_a_subscription_over_a_size_limit_is_refused(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access) as ws:
        await ws.subscribe("1", "subscription { tripsUpdated { rider { ...F0 } } } " + CYCLES)
        error = await ws.error("1")
        assert "within itself" in error["message"], error
        await ws.send({"type": "ping"})
        assert await ws.recv() == {"type": "pong"}  # the socket serves on
