"""The real JavaScript clients against a live server: tests/js/ride.mjs walks a whole ride
with the `graphql-ws` client (driver), Apollo Client + GraphQLWsLink (rider), and the legacy
`subscriptions-transport-ws` client (the driver following the trip, legacy subprotocol).

Needs `node` and `npm` on PATH: without them the test skips locally and fails with CI=true.
`npm ci` runs first when tests/js/node_modules is missing or older than package-lock.json."""

from __future__ import annotations

import os

from taxi.core.config import Settings
from tests.backends import sub_prefix
from tests.live import serve
from tests.node import ensure_node_modules, run, tools

RIDE_TIMEOUT = 60.0  # ride.mjs gives up by itself after RIDE_TIMEOUT_MS (20 s)


async def test_js_clients_ride(settings: Settings) -> None:
    node, npm = tools()
    await ensure_node_modules(npm)
    env = {**os.environ, "RIDE_TIMEOUT_MS": "20000"}
    # Its own position store keys: user ids restart in every test, positions are in Redis.
    settings.channel_prefix = sub_prefix("js")
    async with serve(settings) as live:
        code, out = await run(node, "ride.mjs", live.url, live.ws_url, limit=RIDE_TIMEOUT, env=env)
    assert code == 0, f"node ride.mjs exited with {code}:\n{out}"


async def test_js_persisted_queries(settings: Settings) -> None:
    """Apollo's persisted-query link and urql's persisted exchange, over POST and GET:
    tests/js/persisted.mjs checks what each sent, request by request."""
    node, npm = tools()
    await ensure_node_modules(npm)
    async with serve(settings) as live:
        code, out = await run(node, "persisted.mjs", live.url, limit=RIDE_TIMEOUT)
    assert code == 0, f"node persisted.mjs exited with {code}:\n{out}"
    assert out.count("ok  ") == 14, out
