"""The ride's life across real server processes sharing PostgreSQL + Redis: the same surge
quoted by either process; requests expire exactly once whichever process claims them, also
after the process that took them was killed (SIGKILL); a release on one process
re-dispatches to a driver whose socket is on the other; an arrival is recorded and
published once although every process's worker looks for it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taxi.core.cluster import cluster_client
from taxi.domain import events
from taxi.domain.positions import METERS_PER_DEGREE, Fix
from taxi.domain.positions_redis import RedisPositions
from taxi.domain.routes import Estimator
from tests.backends import REDIS_URL, sub_prefix
from tests.helpers import ACCEPT_TRIP, Account, account, error_code, gql, ok
from tests.procs import TaxiServer, taxi_servers
from tests.streams import numsub
from tests.wait import eventually
from tests.ws import session

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

DEADLINE = 30.0
GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
UPDATE = "mutation U($p: LocationInput!) { updatePosition(position: $p) { availability } }"
REQUEST = "mutation R($input: RequestTripInput!) { requestTrip(input: $input) { id } }"
RELEASE = "mutation R($id: ID!) { releaseTrip(id: $id) { id status driver { id } } }"
OFFERS = "subscription { tripRequested { id status } }"
ESTIMATE = """query E($p: PointInput!, $d: PointInput!) {
  estimateFare(pickUp: $p, dropOff: $d) { surge carsNearby price { amount } } }"""
TRIPS_AT_ONCE = 12  # requests per batch, spread over the processes


def north(meters: float) -> dict[str, float]:
    return {"latitude": 47.0 + meters / METERS_PER_DEGREE, "longitude": 9.0}


@asynccontextmanager
async def cluster(
    pg_database: str, tmp_path: Path, **env: str
) -> AsyncIterator[tuple[list[TaxiServer], str]]:
    prefix = sub_prefix("rides-cluster")
    # Its keys go with the session's, once the test (and so the servers) ended.
    async with taxi_servers(
        ["a", "b"],
        database_url=pg_database,
        redis_url=REDIS_URL,
        log_dir=tmp_path,
        extra_env={"CHANNEL_PREFIX": prefix, **env},
    ) as servers:
        yield servers, prefix


@pytest.fixture
async def engine(pg_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_database)
    yield engine
    await engine.dispose()


class Heard:
    """Every event published on some channels, decoded, from a plain Redis subscriber."""

    def __init__(self) -> None:
        self.kinds: Counter[tuple[str, str]] = Counter()  # (kind, trip id)

    def count(self, kind: str) -> Counter[str]:
        return Counter({key: n for (k, key), n in self.kinds.items() if k == kind})

    async def heard(self, kind: str) -> Counter[str]:
        """`count`, as a probe for `eventually`."""
        return self.count(kind)


@asynccontextmanager
async def hearing(*channels: str) -> AsyncIterator[Heard]:
    heard = Heard()
    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(*channels)

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                body = orjson.loads(message["data"])
                heard.kinds[(body["kind"], body["key"])] += 1

    task = asyncio.create_task(listen())
    try:
        yield heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


async def reasons(engine: AsyncEngine, ids: list[str]) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, cancel_reason FROM trip WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(i) for i in ids]},
        )
        return Counter(f"{status}:{reason}" for status, reason in rows)


async def requests(servers: list[TaxiServer], n: int) -> list[str]:
    """`n` trips from `n` riders, every other one through each process, half of them
    dispatched (with a pick-up nobody is near), half in every driver's pool."""
    ids = []
    for i in range(n):
        server = servers[i % len(servers)]
        rider = await account(server.http)
        where: dict[str, Any] = {"pickUpAddress": "A", "dropOffAddress": "B"}
        if i % 2:
            where["pickUp"] = north(i)
        ids.append((await ok(server.http, REQUEST, {"input": where}, rider))["requestTrip"]["id"])
    return ids


async def test_requests_expire_exactly_once_across_processes(
    pg_database: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    env = {"DISPATCH_TIMEOUT_SECONDS": "2", "DISPATCH_WAVE_SECONDS": "0.5"}
    async with cluster(pg_database, tmp_path, **env) as ((a, b), prefix):
        drivers = [await account(s.http, "DRIVER") for s in (a, b, a, b)]
        for i, driver in enumerate(drivers):
            await ok((a, b)[i % 2].http, GO_ONLINE, {"p": north(200 + i)}, driver)
        async with hearing(events.full_channel(prefix, events.TRIPS)) as heard:
            both = await requests([a, b], TRIPS_AT_ONCE)
            # The surge is the same whichever process quotes it: 6 requests near the
            # pick-up (the dispatched half) against 4 available drivers.
            rider = await account(a.http)
            points = {"p": north(0), "d": north(3000)}
            quotes = [(await ok(s.http, ESTIMATE, points, rider))["estimateFare"] for s in (a, b)]
            assert [(q["surge"], q["carsNearby"]) for q in quotes] == [(1.5, 4)] * 2
            assert quotes[0]["price"] == quotes[1]["price"]
            # Both workers race for every expiry.
            await eventually(
                lambda: reasons(engine, both),
                lambda r: r == {"CANCELED:NO_DRIVER_FOUND": TRIPS_AT_ONCE},
                within=DEADLINE,
            )
            # Taken through a, then a killed before they expire: b expires them (the
            # schedule is in the database, not in a's memory).
            orphans = await requests([a], TRIPS_AT_ONCE)
            await asyncio.to_thread(a.proc.stop, kill=True)
            await eventually(
                lambda: reasons(engine, orphans),
                lambda r: r == {"CANCELED:NO_DRIVER_FOUND": TRIPS_AT_ONCE},
                within=DEADLINE,
            )
            everyone = both + orphans
            await eventually(
                lambda: heard.heard("expired"),
                lambda c: set(c) == set(everyone),
                within=DEADLINE,
            )
        expired = heard.count("expired")
        # Exactly one NO_DRIVER_FOUND event per trip: none twice, none missing.
        assert expired == Counter(dict.fromkeys(everyone, 1)), expired
        print(f"expiry: {sum(expired.values())} NO_DRIVER_FOUND events for {len(everyone)} trips")


async def test_release_and_arrival_across_processes(
    pg_database: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    env = {"DISPATCH_BATCH_SIZE": "1", "DISPATCH_WAVE_SECONDS": "60"}
    async with cluster(pg_database, tmp_path, **env) as ((a, b), prefix):
        rider = await account(a.http)
        first, second = await account(a.http, "DRIVER"), await account(b.http, "DRIVER")
        await ok(a.http, GO_ONLINE, {"p": north(100)}, first)
        await ok(b.http, GO_ONLINE, {"p": north(500)}, second)
        where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": north(0)}
        trip_id = (await ok(a.http, REQUEST, {"input": where}, rider))["requestTrip"]["id"]
        await ok(a.http, ACCEPT_TRIP, {"id": trip_id}, first)

        # Arrival: reported through a and b, recorded and published once.
        channels = (events.trip_channel(trip_id), events.location_channel(trip_id))
        async with hearing(*(events.full_channel(prefix, c) for c in channels)) as heard:
            for server, meters in ((a, 30), (b, 20), (a, 10), (b, 25)):
                await ok(server.http, UPDATE, {"p": north(meters)}, first)

            async def arrived() -> bool:
                async with engine.connect() as conn:
                    at = await conn.scalar(
                        text("SELECT arrived_at FROM trip WHERE id = :t"),
                        {"t": uuid.UUID(trip_id)},
                    )
                return at is not None

            await eventually(arrived, within=DEADLINE)
            await eventually(lambda: heard.heard("arrived"), within=DEADLINE)
            # Every process's worker had a pass since; still one.
            await ok(b.http, UPDATE, {"p": north(5)}, first)
            await eventually(
                lambda: heard.heard("location"),
                lambda c: c[trip_id] >= 5,
                within=DEADLINE,
            )
            assert heard.count("arrived") == Counter({trip_id: 1})

        # The release through b reaches the other driver's socket on a.
        async with session(a.ws_url, second.access) as ws:
            await ws.subscribe("offers", OFFERS, {})
            offers = events.full_channel(prefix, events.driver_channel(int(second.id)))
            await eventually(lambda: numsub(a, offers), lambda n: n > 0, within=DEADLINE)
            started = time.perf_counter()
            back = (await ok(b.http, RELEASE, {"id": trip_id}, first))["releaseTrip"]
            got = (await ws.next("offers", within=DEADLINE))["tripRequested"]
            latency = time.perf_counter() - started
        assert (back["status"], back["driver"]) == ("REQUESTED", None)
        assert got == {"id": trip_id, "status": "REQUESTED"}
        print(f"re-dispatch latency across processes: {latency * 1000:.1f} ms")

        # a killed: b alone serves the rest; the releasing driver never gets it back.
        await asyncio.to_thread(a.proc.stop, kill=True)
        body = await gql(b.http, ACCEPT_TRIP, {"id": trip_id}, token=first.access)
        assert error_code(body) == "NOT_FOUND"
        await ok(b.http, ACCEPT_TRIP, {"id": trip_id}, second)
        await ok(b.http, RELEASE, {"id": trip_id}, second)
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT driver_id, wave FROM trip_offer WHERE trip_id = :t"),
                {"t": uuid.UUID(trip_id)},
            )
            offered = {driver: wave for driver, wave in rows}
        assert offered == {int(first.id): -1, int(second.id): -1}
        state = await ok(b.http, "{ driverState { availability } }", {}, second)
        assert state["driverState"]["availability"] == "AVAILABLE"
        assert isinstance(rider, Account)


async def test_the_ride_stages_on_a_redis_cluster(redis_cluster_url: str) -> None:
    """The store's trip scripts touch one slot (one hash tag): arrival once, the driven
    distance, and nothing left behind once the trip ends, on a Redis Cluster too."""
    client = cluster_client(redis_cluster_url)
    await client.initialize()
    store = RedisPositions(
        client,
        prefix=f"rides-slot-{uuid.uuid4().hex[:8]}",
        estimator=Estimator(),
        arrival_meters=50,
    )
    driver, trip_id = 7, uuid.uuid4()

    def at(meters: float) -> Fix:
        return Fix(north(meters)["latitude"], 9.0, None, time.time())

    try:
        await store.report(driver_id=driver, fix=at(300), online=True)
        state, _ = await store.status(driver_id=driver)
        await store.start_trip(
            driver_id=driver, trip_id=trip_id, rider_id=3, epoch=state.epoch, pick_up=pair(0)
        )
        assert not (await store.report(driver_id=driver, fix=at(100), online=False)).arrived
        arrived = [
            (await store.report(driver_id=driver, fix=at(m), online=False)).arrived
            for m in (40, 20, 30)
        ]
        assert arrived == [True, False, False]
        assert await store.arrivals(limit=10) == [trip_id]
        await store.drive(trip_id=trip_id, drop_off=pair(2000))
        state = await store.set_trip_location(driver_id=driver, trip_id=trip_id, fix=at(1030))
        assert state.target == pair(2000)
        assert await store.driven(trip_id=trip_id) == pytest.approx(1000)
        await store.end_trip(driver_id=driver, trip_id=trip_id)
        await store.go_offline(driver_id=driver)
        assert await store.driven(trip_id=trip_id) == 0
        assert await store.arrivals(limit=10) == []
        keys = [store.state, store.fixes, store.trips, store.stages, store.driven_key]
        keys += [store.arrivals_key]
        assert await client.exists(*keys) == 0
    finally:
        # What stays by design (goOfflines counted, the ended trip remembered): this test's.
        await client.delete(store.epochs, store.ended)
        await client.aclose()


def pair(meters: float) -> tuple[float, float]:
    return north(meters)["latitude"], north(meters)["longitude"]
