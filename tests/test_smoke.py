from __future__ import annotations

import httpx

from tests.helpers import account, gql


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_me(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    body = await gql(client, "{ me { id username group } }", token=rider.access)
    assert body["data"]["me"] == {"id": rider.id, "username": rider.username, "group": "RIDER"}
