from __future__ import annotations

import httpx

from tests.backends import Backend
from tests.helpers import account, gql


async def test_health(client: httpx.AsyncClient, backend: Backend) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    # The backends in use, by kind only: no address, no credentials.
    database, broadcast = ("postgresql", "redis") if backend.real else ("sqlite", "memory")
    backends = {"database": database, "broadcast": broadcast}
    assert response.json() == {"status": "ok", "backends": backends}


async def test_me(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    body = await gql(client, "{ me { id username group } }", token=rider.access)
    assert body["data"]["me"] == {"id": rider.id, "username": rider.username, "group": "RIDER"}
