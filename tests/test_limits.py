"""Document limits (PROTOCOL.md "Limits"): refused with HTTP 400 before anything executes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from taxi.api.context import Context
from tests.helpers import error_code

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


@pytest.mark.parametrize(
    ("document", "words"),
    [(DEEP, "exceeds maximum operation depth of 10"), (ALIASES, "Allowed: 15"), (TOKENS, "2000")],
    ids=["depth", "aliases", "tokens"],
)
async def test_over_a_limit_is_refused_before_execution(
    client: httpx.AsyncClient, me_calls: list[int], document: str, words: str
) -> None:
    response = await client.post("/graphql", json={"query": document})
    assert response.status_code == 400
    body = response.json()
    assert body.get("data") is None
    assert error_code(body) in {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
    assert any(words in e["message"] for e in body["errors"]), body
    assert me_calls == []


async def test_at_the_limits_it_runs(client: httpx.AsyncClient, me_calls: list[int]) -> None:
    fifteen = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(15)) + " }"
    response = await client.post("/graphql", json={"query": fifteen})
    assert response.status_code == 200
    assert error_code(response.json()) == "UNAUTHENTICATED"  # it executed
    assert len(me_calls) == 15
