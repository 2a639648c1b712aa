"""A driver is ON_TRIP exactly while a trip they accepted is STARTED or IN_PROGRESS, whatever
the interleaving (issue 19, findings 3 and 12): acceptTrip on one server process racing
cancelTrip or goOffline on another, both sharing PostgreSQL and Redis, many times over
with the second request sent a little earlier or later each time. After every race the
rows, driverState, goOffline and the offers must agree."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taxi.domain.positions import METERS_PER_DEGREE
from tests.backends import REDIS_URL, sub_prefix
from tests.helpers import ACCEPT_TRIP, CANCEL_TRIP, Account, account, error_code, gql
from tests.procs import TaxiServer, taxi_servers
from tests.wait import WAIT

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TRIALS = 50
# The second request of a race is sent up to this long before or after the first: the
# accept's commit and its store change fall at different points of the other request.
SPREAD = 0.012
GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
GO_OFFLINE = "mutation { goOffline { availability } }"
STATE = "{ driverState { availability } }"
REQUEST = "mutation R($input: RequestTripInput!) { requestTrip(input: $input) { id } }"
NEARBY = "query N($p: PointInput!) { nearbyCars(near: $p, radiusMeters: 500) { distanceMeters } }"
# Other users' requests that keep a server busy meanwhile: documents whose validation
# costs a few milliseconds of CPU each (overlapping fragments), each one new (the
# server caches validated documents), from LOAD_CLIENTS clients at once.
LOAD_FRAGMENTS = 5
LOAD = "{ me { %s } } %s" % (  # noqa: UP031 - GraphQL's braces read better so
    " ".join(f"...F{i}" for i in range(LOAD_FRAGMENTS)),
    " ".join(f"fragment F{i} on User {{ id username firstName }}" for i in range(LOAD_FRAGMENTS)),
)
LOAD_CLIENTS = 2
HERE = {"latitude": 47.0, "longitude": 8.0}
NEAR = {"latitude": 47.0 + 50 / METERS_PER_DEGREE, "longitude": 8.0}


@pytest.fixture
async def cluster(pg_database: str, tmp_path: Path) -> AsyncIterator[list[TaxiServer]]:
    env = {
        "CHANNEL_PREFIX": sub_prefix("races"),
        "DISPATCH_BATCH_SIZE": "1",
        "POSITION_TTL": "3600",
    }
    async with taxi_servers(
        ["a", "b"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path, extra_env=env
    ) as servers:
        yield servers


async def row(engine: AsyncEngine, trip_id: str) -> tuple[str, int | None]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT status, driver_id FROM trip WHERE id = :t"), {"t": uuid.UUID(trip_id)}
        )
        status, driver = found.one()
        return status, driver


async def offered_to(engine: AsyncEngine, trip_id: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT driver_id FROM trip_offer WHERE trip_id = :t"), {"t": uuid.UUID(trip_id)}
        )
        return [d for (d,) in rows]


async def call(server: TaxiServer, query: str, who: Account, variables: Any = None) -> Any:
    return await gql(server.http, query, variables or {}, token=who.access)


async def state(server: TaxiServer, driver: Account) -> str:
    body = await call(server, STATE, driver)
    availability: str = body["data"]["driverState"]["availability"]
    return availability


async def dispatched(server: TaxiServer, rider: Account) -> str:
    where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": HERE}
    body = await call(server, REQUEST, rider, {"input": where})
    assert "errors" not in body, body
    trip_id: str = body["data"]["requestTrip"]["id"]
    return trip_id


Send = Callable[[], Awaitable[dict[str, Any]]]


async def race(first: Send, second: Send, offset: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both requests at once, `second` sent `offset` seconds after `first` (before it
    when negative). The delay varies the interleaving; nothing waits on it."""

    async def later(send: Send, by: float) -> Any:
        await asyncio.sleep(max(by, 0.0))
        return await send()

    one, two = await asyncio.gather(later(first, -offset), later(second, offset))
    return one, two


async def at_commit(
    engine: AsyncEngine, trip_id: str, first: Send, second: Send
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`second` sent the moment `first` has committed a change of the trip's row (or has
    answered): the interleaving the finding saw, the other process acting between the
    accept's commit and what the accept does after it."""

    async def changed() -> None:
        async with engine.connect() as conn, asyncio.timeout(WAIT):
            query = text("SELECT status FROM trip WHERE id = :t")
            while not sent.done():
                # Each statement sees the latest commit (READ COMMITTED): no sleep, the
                # window after the commit is a few milliseconds.
                if await conn.scalar(query, {"t": uuid.UUID(trip_id)}) != "REQUESTED":
                    return

    sent = asyncio.ensure_future(first())
    await changed()
    two = await second()
    return await sent, two


def offsets() -> list[float]:
    """TRIALS delays spread evenly over [-SPREAD, SPREAD]."""
    return [SPREAD * (2 * i / (TRIALS - 1) - 1) for i in range(TRIALS)]


async def trials(
    a: TaxiServer, engine: AsyncEngine, driver: Account, riders: list[Account]
) -> AsyncIterator[tuple[int, float, Account, str]]:
    """TRIALS races: each one's number, offset, rider, and a trip just requested on `a`
    and offered to the driver (who must be AVAILABLE again after the previous race)."""
    for i, offset in enumerate(offsets()):
        rider = riders[i % len(riders)]
        trip_id = await dispatched(a, rider)
        assert await offered_to(engine, trip_id) == [int(driver.id)], i
        yield i, offset, rider, trip_id


async def interleave(
    engine: AsyncEngine, trip_id: str, first: Send, second: Send, trial: int, offset: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every fourth trial `second` at `first`'s commit, every fourth the other way round,
    the others `offset` apart. The two forced orders happen whatever the machine's load
    (a race `offset` apart may go the same way every time on a busy machine)."""
    if trial % 4 == 1:
        return await at_commit(engine, trip_id, first, second)
    if trial % 4 == 3:
        two, one = await at_commit(engine, trip_id, second, first)
        return one, two
    return await race(first, second, offset)


@asynccontextmanager
async def busy(server: TaxiServer, who: Account) -> AsyncIterator[None]:
    """The issue's "some load on the accepting process": while the race runs, other
    requests keep the server's event loop busy, so the steps of one request (the
    accept's commit, its store change) are spread apart by others' work."""
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            body = await call(server, f"# {uuid.uuid4()}\n{LOAD}", who)
            assert "errors" not in body, body

    clients = [asyncio.create_task(client()) for _ in range(LOAD_CLIENTS)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*clients)


async def setup(a: TaxiServer) -> tuple[Account, list[Account]]:
    driver = await account(a.http, "DRIVER")
    body = await call(a, GO_ONLINE, driver, {"p": NEAR})
    assert body["data"]["goOnline"]["availability"] == "AVAILABLE", body
    riders = [await account(a.http) for _ in range(4)]
    return driver, riders


async def test_cancel_as_the_driver_accepts_leaves_them_available(
    cluster: list[TaxiServer], pg_engine: AsyncEngine
) -> None:
    """Finding 3: the rider cancels on b while the driver accepts on a."""
    a, b = cluster
    driver, riders = await setup(a)
    outcomes: Counter[str] = Counter()
    async with busy(a, await account(a.http)):
        await cancel_races(a, b, pg_engine, driver, riders, outcomes)
    # Both orders happened (each is forced in some trials: interleave).
    assert {"accept lost", "accepted, then canceled"} <= set(outcomes), outcomes
    near = await call(b, NEARBY, riders[0], {"p": HERE})
    assert len(near["data"]["nearbyCars"]) == 1
    assert (await call(b, GO_OFFLINE, driver))["data"]["goOffline"]["availability"] == "OFFLINE"


async def cancel_races(
    a: TaxiServer,
    b: TaxiServer,
    engine: AsyncEngine,
    driver: Account,
    riders: list[Account],
    outcomes: Counter[str],
) -> None:
    async for i, offset, rider, trip_id in trials(a, engine, driver, riders):
        accepted, canceled = await interleave(
            engine,
            trip_id,
            partial(call, a, ACCEPT_TRIP, driver, {"id": trip_id}),
            partial(call, b, CANCEL_TRIP, rider, {"id": trip_id}),
            i,
            offset,
        )
        context = (i, offset, accepted, canceled)
        if "errors" in canceled:
            # The cancel read REQUESTED, the accept committed before its write: it lost
            # the race (CONFLICT) and the trip is the driver's, as if it came after.
            outcomes["cancel lost"] += 1
            assert error_code(canceled) == "CONFLICT", context
            assert await row(engine, trip_id) == ("STARTED", int(driver.id)), context
            assert {await state(a, driver), await state(b, driver)} == {"ON_TRIP"}, context
            assert "errors" not in await call(b, CANCEL_TRIP, rider, {"id": trip_id})
        elif "errors" in accepted:
            outcomes["accept lost"] += 1
            assert error_code(accepted) == "CONFLICT", context
            assert await row(engine, trip_id) == ("CANCELED", None), context
        else:
            outcomes["accepted, then canceled"] += 1
            assert await row(engine, trip_id) == ("CANCELED", int(driver.id)), context
        assert {await state(a, driver), await state(b, driver)} == {"AVAILABLE"}, (
            context,
            outcomes,
        )


async def test_accept_racing_go_offline_has_one_winner(
    cluster: list[TaxiServer], pg_engine: AsyncEngine
) -> None:
    """Finding 12: the driver goes offline on b while accepting on a: either the accept
    wins (goOffline is CONFLICT, ON_TRIP) or goOffline does (the accept is CONFLICT,
    OFFLINE), never both."""
    a, b = cluster
    driver, riders = await setup(a)
    outcomes: Counter[str] = Counter()
    async for i, offset, rider, trip_id in trials(a, pg_engine, driver, riders):
        accepted, offline = await interleave(
            pg_engine,
            trip_id,
            partial(call, a, ACCEPT_TRIP, driver, {"id": trip_id}),
            partial(call, b, GO_OFFLINE, driver),
            i,
            offset,
        )
        context = (i, offset, accepted, offline)
        if "errors" not in accepted:
            outcomes["accepted"] += 1
            assert error_code(offline) == "CONFLICT", context
            assert await row(pg_engine, trip_id) == ("STARTED", int(driver.id)), context
            assert {await state(a, driver), await state(b, driver)} == {"ON_TRIP"}, context
            assert "errors" not in await call(b, CANCEL_TRIP, rider, {"id": trip_id})
            assert await state(b, driver) == "AVAILABLE", context
        else:
            outcomes["offline"] += 1
            assert error_code(accepted) == "CONFLICT", context
            assert offline["data"]["goOffline"]["availability"] == "OFFLINE", context
            assert await row(pg_engine, trip_id) == ("REQUESTED", None), context
            assert {await state(a, driver), await state(b, driver)} == {"OFFLINE"}, context
            assert "errors" not in await call(b, CANCEL_TRIP, rider, {"id": trip_id})
            body = await call(a, GO_ONLINE, driver, {"p": NEAR})
            assert body["data"]["goOnline"]["availability"] == "AVAILABLE", context
    assert set(outcomes) == {"accepted", "offline"}, outcomes
    assert (await call(a, GO_OFFLINE, driver))["data"]["goOffline"]["availability"] == "OFFLINE"
