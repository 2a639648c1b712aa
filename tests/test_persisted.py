"""Persisted documents (PROTOCOL.md): APQ over POST, GET and WebSocket, the store
shared by two real server processes, and trusted-documents mode."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taxi.api.persisted import sha256
from taxi.core.config import Settings
from taxi.main import create_app
from tests.backends import Backend
from tests.helpers import LOG_IN, TRIP_UPDATED, account, error_code, request_trip
from tests.procs import taxi_servers
from tests.ws import PROTOCOLS, session

ME = "query Me { me { username } }"
PING = "query Ping { __typename }"


def apq(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def post(
    client: httpx.AsyncClient, query: str | None, digest: str, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": apq(digest), **extra}
    if query is not None:
        body["query"] = query
    response = await client.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get(client: httpx.AsyncClient, digest: str, **params: str) -> httpx.Response:
    return await client.get("/graphql", params={"extensions": json.dumps(apq(digest)), **params})


@pytest.fixture
async def client_for(settings: Settings) -> AsyncIterator[Any]:
    """An HTTP client on an app with other settings."""
    apps: list[Any] = []

    async def make(**changes: Any) -> httpx.AsyncClient:
        app = create_app(settings.model_copy(update=changes))
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        apps.append(context)
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    yield make
    for context in reversed(apps):
        await context.__aexit__(None, None, None)


def fresh(document: str) -> str:
    """`document` with a comment no other run has: registered documents outlive a test
    in a shared Redis."""
    return f"{document}\n# {uuid.uuid4()}"


async def test_apq_over_post_and_get(client: httpx.AsyncClient) -> None:
    ping = fresh(PING)
    digest = sha256(ping)
    first = await post(client, None, digest)
    assert first["errors"][0]["message"] == "PersistedQueryNotFound"
    assert error_code(first) == "PERSISTED_QUERY_NOT_FOUND"
    assert (await post(client, ping, digest))["data"] == {"__typename": "Query"}
    assert (await post(client, None, digest))["data"] == {"__typename": "Query"}
    # Hash only over GET: what a CDN caches.
    response = await get(client, digest)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"__typename": "Query"}
    missing = await get(client, sha256(fresh(PING)))
    assert error_code(missing.json()) == "PERSISTED_QUERY_NOT_FOUND"
    assert missing.headers["cache-control"] == "no-store"


async def test_mismatched_hash_and_bad_extension(client: httpx.AsyncClient) -> None:
    body = await post(client, PING, sha256("query Other { __typename }"))
    assert error_code(body) == "BAD_USER_INPUT"
    response = await client.post(
        "/graphql", json={"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "x"}}}
    )
    assert error_code(response.json()) == "BAD_USER_INPUT"


async def test_get_never_runs_a_persisted_mutation(client: httpx.AsyncClient) -> None:
    digest = sha256(LOG_IN)
    variables = {"username": "nobody", "password": "x"}
    registered = await post(client, LOG_IN, digest, variables=variables)
    assert error_code(registered) == "UNAUTHENTICATED"  # it ran, over POST
    response = await get(client, digest, variables=json.dumps(variables))
    assert response.status_code in (400, 405), response.text
    assert "data" not in response.json() or response.json()["data"] is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_apq_in_a_websocket_subscribe(server: Any, protocol: str) -> None:
    async with server.http() as http:
        rider = await account(http)
        trip = await request_trip(http, rider)
        # A document no earlier test registered (the Redis store outlives one app).
        document = fresh(TRIP_UPDATED)
        digest = sha256(document)
        async with session(server.ws_url, rider.access, protocol) as ws:
            kind = "start" if ws.legacy else "subscribe"
            payload = {"variables": {"id": trip["id"]}, "extensions": apq(digest)}
            await ws.send({"id": "1", "type": kind, "payload": payload})
            error = await ws.error("1")
            assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
            await ws.send({"id": "2", "type": kind, "payload": {**payload, "query": document}})
            assert (await ws.next("2"))["tripUpdated"]["id"] == trip["id"]
            await ws.send({"id": "3", "type": kind, "payload": payload})
            assert (await ws.next("3"))["tripUpdated"]["id"] == trip["id"]


async def test_trusted_documents_only(client_for: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({sha256(PING): PING}))
    client = await client_for(persisted_documents="only", persisted_documents_file=manifest)
    assert (await post(client, None, sha256(PING)))["data"] == {"__typename": "Query"}
    # An ad-hoc document, with or without its hash, is refused.
    adhoc = await client.post("/graphql", json={"query": ME})
    assert error_code(adhoc.json()) == "FORBIDDEN"
    assert error_code(await post(client, None, sha256(ME))) == "PERSISTED_QUERY_NOT_FOUND"
    assert error_code(await post(client, ME, sha256(ME))) == "FORBIDDEN"


async def test_persisted_documents_off(client_for: Any) -> None:
    client = await client_for(persisted_documents="off")
    body = await post(client, PING, sha256(PING))
    assert error_code(body) == "PERSISTED_QUERY_NOT_SUPPORTED"
    assert (await client.post("/graphql", json={"query": PING})).json()["data"]


async def test_registered_on_one_process_runs_on_another(
    real_backend: Backend, tmp_path: Path
) -> None:
    assert real_backend.redis_url
    query = fresh("query Shared { __typename }")
    digest = sha256(query)
    async with taxi_servers(
        ["a", "b"],
        database_url=real_backend.database_url,
        redis_url=real_backend.redis_url,
        log_dir=tmp_path,
    ) as (a, b):
        assert error_code(await post(b.http, None, digest)) == "PERSISTED_QUERY_NOT_FOUND"
        assert (await post(a.http, query, digest))["data"] == {"__typename": "Query"}
        assert (await post(b.http, None, digest))["data"] == {"__typename": "Query"}
        response = await get(b.http, digest)
        assert response.json()["data"] == {"__typename": "Query"}
