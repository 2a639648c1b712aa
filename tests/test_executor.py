"""The one executor (taxi/api/executor.py): one document cache for every transport,
bounded; what a transport cannot run refused as a bad request, alike on both."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import validate

from taxi.api import prepared
from taxi.api.build import build_schema
from taxi.api.prepared import DocumentCache
from taxi.api.strawberry_adapter import core_schema
from tests.helpers import account, gql
from tests.live import LiveServer
from tests.ws import session

ME = "query Me { me { id username } }"


async def test_a_document_is_validated_once_whichever_transport(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        validated.append("x")
        return validate(*args, **kwargs)

    monkeypatch.setattr(prepared, "validate", counted)
    async with server.http() as client:
        rider = await account(client)
        validated.clear()
        for _ in range(3):
            body = await gql(client, ME, token=rider.access)
            assert body["data"]["me"]["username"] == rider.username
    async with session(server.ws_url, rider.access) as ws:
        for n in range(3):
            await ws.subscribe(str(n), ME)
            message = await ws.recv()
            assert message["payload"]["data"]["me"]["username"] == rider.username, message
            assert await ws.recv() == {"id": str(n), "type": "complete"}
    assert validated == ["x"]


def test_the_cache_is_bounded() -> None:
    documents = DocumentCache(core_schema(build_schema()), introspection=True)
    for n in range(prepared.ENTRIES + 50):
        assert not documents.get(f"query Q{n} {{ __typename }}").validation_errors
    assert len(documents) == prepared.ENTRIES
    padded = "{ __typename }" + " " * prepared.MAX_KEPT_CHARS
    assert documents.get(padded).document is not None  # prepared, answered, not kept
    assert padded not in documents._entries
    # The most recently used stay; the oldest went first.
    assert "query Q0 { __typename }" not in documents._entries
    assert f"query Q{prepared.ENTRIES + 49} {{ __typename }}" in documents._entries


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"query": ME, "operationName": "Nope"}, 'Unknown operation named "Nope".'),
        ({"extensions": {}}, "No GraphQL query found in the request"),
    ],
)
async def test_what_cannot_run_is_a_bad_request_on_both_transports(
    server: LiveServer, payload: dict[str, Any], message: str
) -> None:
    async with server.http() as client:
        rider = await account(client)
        response = await client.post(
            "/graphql", json=payload, headers={"Authorization": f"Bearer {rider.access}"}
        )
    assert response.status_code == 400, response.text
    error = {"message": message, "extensions": {"code": "BAD_REQUEST"}}
    assert response.json() == {"data": None, "errors": [error]}
    async with session(server.ws_url, rider.access) as ws:
        await ws.send({"id": "1", "type": "subscribe", "payload": payload})
        assert await ws.recv() == {"id": "1", "type": "error", "payload": [error]}
