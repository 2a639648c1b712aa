"""README's GraphiQL walk-through, block by block, as a person would run it in two windows:
each ```graphql block names its window (`# driver window` / `# rider window`); mutations and
queries go over HTTP with that window's token, subscriptions over a socket that stays open."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from taxi.core.config import Settings
from taxi.domain import events
from tests.backends import sub_prefix
from tests.helpers import gql, unique
from tests.live import serve, watching
from tests.ws import WsClient, session

README = Path(__file__).parent.parent / "README.md"
SECTION = re.compile(r"## Walk-through: a ride in GraphiQL.*?(?=\n## |\n\*\*One active trip)", re.S)
BLOCK = re.compile(r"```graphql\n(.*?)```", re.S)
WINDOW = re.compile(r"^\s*# (driver|rider) window\n")


def walkthrough() -> list[tuple[str, str]]:
    found = SECTION.search(README.read_text(encoding="utf-8"))
    assert found, "README.md lost its walk-through section"
    steps = []
    for block in BLOCK.findall(found.group(0)):
        window = WINDOW.match(block)
        assert window, f"a walk-through block without its window:\n{block}"
        steps.append((window.group(1), block))
    return steps


async def test_the_readme_walkthrough_rides_a_trip(settings: Settings) -> None:
    steps = walkthrough()
    # Its own channels and position store: drivers left online by other tests at the same
    # corner (positions outlive a test on the shared Redis) are not offered this trip.
    settings = settings.model_copy(update={"channel_prefix": sub_prefix("walk")})
    assert len(steps) >= 12
    names = {'"dora"': f'"{unique("dora")}"', '"ada"': f'"{unique("ada")}"'}
    tokens: dict[str, str] = {}
    ids: dict[str, int] = {}
    subscriptions: dict[str, tuple[WsClient, str]] = {}
    trip_id = ""
    async with (
        serve(settings) as live,
        live.http() as client,
        AsyncExitStack() as stack,
    ):
        for n, (window, block) in enumerate(steps):
            document = block.replace("<trip id>", trip_id)
            for name, fresh in names.items():
                document = document.replace(name, fresh)
            if "subscription" in document:
                ws = await stack.enter_async_context(session(live.ws_url, tokens[window]))
                await ws.subscribe(str(n), document)
                subscriptions[window] = (ws, str(n))
                # Before the next step, as a person would see it: the offers stream is live
                # (it sends nothing first), the trip's stream has sent its current state.
                if window == "driver":
                    await watching(live.app, events.driver_channel(ids["driver"]))
                else:
                    first = await ws.next(str(n))
                    assert first["tripUpdated"]["status"] == "REQUESTED"
                continue
            body = await gql(client, document, token=tokens.get(window))
            assert "errors" not in body, (document, body)
            data = body["data"]
            if "signUp" in data:
                ids[window] = int(data["signUp"]["id"])
            if "logIn" in data:
                tokens[window] = data["logIn"]["access"]
            if "requestTrip" in data:
                trip_id = data["requestTrip"]["id"]
        assert data == {"rateTrip": {"rating": 5}}

        driver_ws, driver_op = subscriptions["driver"]
        offered = await driver_ws.next_where(
            driver_op, lambda d: d["tripRequested"]["id"] == trip_id
        )
        assert offered["tripRequested"]["pickUp"] == {"latitude": 52.521, "longitude": 13.406}
        rider_ws, rider_op = subscriptions["rider"]
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["status"] != "COMPLETED":
            seen.append((await rider_ws.next(rider_op))["tripUpdated"])
        assert any(s["driverLocation"] == {"latitude": 52.5209, "longitude": 13.4058} for s in seen)
        assert "STARTED" in [s["status"] for s in seen]
