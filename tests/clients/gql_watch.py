"""Python: gql over HTTP (httpx) and WebSocket (websockets), refreshing the token."""

import asyncio
import base64
import json
import os
import time
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportClosed, TransportConnectionFailed
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

HTTP_URL = os.environ.get("TAXI_URL", "http://127.0.0.1:8000/graphql")
WS_URL = HTTP_URL.replace("http", "ws", 1)
REFRESH_MARGIN = 30  # seconds before expiry
LOG_IN = (
    "mutation ($u: String!, $p: String!) { logIn(username: $u, password: $p) { access refresh } }"
)
REFRESH = "mutation ($r: String!) { refreshToken(refresh: $r) { access refresh } }"
ME = "query Me { me { username group } }"
WATCH = "subscription Watch($id: ID!) { tripUpdated(id: $id) { id status } }"


def seconds_left(jwt: str) -> float:
    payload = jwt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    expires: float = claims["exp"]
    return expires - time.time()


class Tokens:
    """Refresh tokens are single use: one refresh at a time."""

    def __init__(self) -> None:
        self.access = self.refresh = ""
        self.lock = asyncio.Lock()

    async def call(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with Client(transport=HTTPXAsyncTransport(url=HTTP_URL)) as session:
            result: dict[str, Any] = await session.execute(
                GraphQLRequest(query, variable_values=variables)
            )
            return result

    async def log_in(self, username: str, password: str) -> None:
        data = await self.call(LOG_IN, {"u": username, "p": password})
        self.access, self.refresh = data["logIn"]["access"], data["logIn"]["refresh"]

    async def fresh(self) -> str:
        async with self.lock:
            if seconds_left(self.access) < REFRESH_MARGIN:
                data = await self.call(REFRESH, {"r": self.refresh})
                self.access = data["refreshToken"]["access"]
                self.refresh = data["refreshToken"]["refresh"]
                print("refreshed", flush=True)
        return self.access


async def main() -> None:
    tokens = Tokens()
    await tokens.log_in(os.environ["TAXI_USERNAME"], os.environ["TAXI_PASSWORD"])
    headers = {"Authorization": f"Bearer {await tokens.fresh()}"}
    async with Client(transport=HTTPXAsyncTransport(url=HTTP_URL, headers=headers)) as session:
        me = await session.execute(GraphQLRequest(ME))
    print(f"signed in as {me['me']['username']}", flush=True)

    watch = GraphQLRequest(WATCH, variable_values={"id": os.environ["TAXI_TRIP"]})
    while True:
        # The token goes in connection_init. When it expires the server closes the socket
        # (4403): connect again with a fresh one; tripUpdated re-sends the current state.
        transport = WebsocketsTransport(
            url=WS_URL,
            init_payload={"Authorization": f"Bearer {await tokens.fresh()}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],  # graphql-transport-ws
        )
        try:
            async with Client(transport=transport) as ws:
                print("connected", flush=True)
                async for result in ws.subscribe(watch):
                    status = result["tripUpdated"]["status"]
                    print(f"status {status}", flush=True)  # the current state first, then changes
                    if status in ("COMPLETED", "CANCELED"):
                        return
        except (TransportClosed, TransportConnectionFailed):
            continue


if __name__ == "__main__":
    asyncio.run(main())
