"""Two real server processes (`taxi serve`) over real sockets, sharing PostgreSQL and
Redis: events cross processes, Redis restarts heal without the clients reconnecting,
and concurrent accepts through both processes have exactly one winner.

The `cluster` scenarios run twice: on one Redis (REDIS_URL) and on a Redis Cluster
(REDIS_CLUSTER_URL, sharded pub/sub). These need PostgreSQL and Redis: the fixtures
skip without them locally and fail with CI=true. Redis may be shared with other test
runs, so streams are filtered by this test's trip ids; the restart test runs its own
redis-server (and test_failover its own cluster)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis

from taxi.core.cluster import cluster_client
from taxi.domain import usernames
from tests.backends import REDIS_URL, SESSION_PREFIX
from tests.helpers import (
    ACCEPT_TRIP,
    DRIVER_LOCATION,
    LOG_IN,
    PASSWORD,
    REPORT_LOCATION,
    TRIP,
    TRIP_REQUESTED,
    TRIP_UPDATED,
    Account,
    account,
    error_code,
    gql,
    ok,
    request_trip,
)
from tests.procs import RedisServer, TaxiServer, redis_server, taxi_servers
from tests.streams import (
    is_lat,
    is_status,
    latitude,
    never,
    pool_subscribed,
    report,
    set_status,
    status_of,
)
from tests.ws import session

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

log = logging.getLogger(__name__)


@pytest.fixture(params=["redis", "redis-cluster"])
async def cluster(
    request: pytest.FixtureRequest, pg_database: str, tmp_path: Path
) -> AsyncIterator[list[TaxiServer]]:
    redis_url, cluster_url = REDIS_URL, ""
    if request.param == "redis-cluster":
        redis_url, cluster_url = "", request.getfixturevalue("redis_cluster_url")
    async with taxi_servers(
        ["a", "b"],
        database_url=pg_database,
        redis_url=redis_url,
        redis_cluster_url=cluster_url,
        log_dir=tmp_path,
    ) as servers:
        yield servers


async def test_events_cross_processes(cluster: list[TaxiServer]) -> None:
    a, b = cluster
    driver, rider = await asyncio.gather(account(a.http, "DRIVER"), account(b.http))

    async with session(a.ws_url, driver.access, interleaved=True) as driver_ws:
        await driver_ws.subscribe("pool", TRIP_REQUESTED, {})
        await pool_subscribed(a)

        trip = await request_trip(b.http, rider)
        tid = trip["id"]
        seen = await driver_ws.until(
            "pool", lambda d: d["tripRequested"]["id"] == tid, skip=lambda _d: True
        )
        assert seen["tripRequested"]["status"] == "REQUESTED"
        assert seen["tripRequested"]["rider"]["username"] == rider.username

        async with session(b.ws_url, rider.access, interleaved=True) as rider_ws:
            await rider_ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
            assert status_of(await rider_ws.next("trip")) == "REQUESTED"  # current state

            await ok(a.http, ACCEPT_TRIP, {"id": tid}, driver)
            started = (await rider_ws.next("trip"))["tripUpdated"]
            assert started["status"] == "STARTED"
            assert started["driver"]["username"] == driver.username

            # A known position is sent first: the subscription is live once it arrives.
            await report(a, driver, tid, 52.50)
            await rider_ws.subscribe("car", DRIVER_LOCATION, {"tripId": tid})
            assert latitude(await rider_ws.next("car")) == 52.50
            for lat in (52.51, 52.52, 52.53):
                await report(a, driver, tid, lat)
                assert latitude(await rider_ws.next("car")) == lat

            await set_status(a, driver, tid, "IN_PROGRESS")
            assert status_of(await rider_ws.next("trip")) == "IN_PROGRESS"


async def test_redis_restart_heals_open_subscriptions(pg_database: str, tmp_path: Path) -> None:
    async with (
        redis_server(tmp_path) as redis,
        taxi_servers(
            ["a", "b"], database_url=pg_database, redis_url=redis.url, log_dir=tmp_path
        ) as (a, b),
    ):
        await _restart_scenario(redis, a, b)


async def _restart_scenario(redis: RedisServer, a: TaxiServer, b: TaxiServer) -> None:
    driver, rider = await asyncio.gather(account(a.http, "DRIVER"), account(b.http))
    trip = await request_trip(b.http, rider)
    tid = trip["id"]
    await ok(a.http, ACCEPT_TRIP, {"id": tid}, driver)
    await report(a, driver, tid, 48.10)

    async with (
        session(b.ws_url, rider.access, interleaved=True) as rider_ws,
        session(a.ws_url, driver.access, interleaved=True) as driver_ws,
    ):
        # Each stream sends the current state first: once read, it is live.
        await rider_ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
        await rider_ws.subscribe("car", DRIVER_LOCATION, {"tripId": tid})
        await driver_ws.subscribe("trip", TRIP_UPDATED, {"id": tid})
        assert status_of(await rider_ws.next("trip")) == "STARTED"
        assert latitude(await rider_ws.next("car")) == 48.10
        assert status_of(await driver_ws.next("trip")) == "STARTED"
        await report(a, driver, tid, 48.11)  # across processes before the outage
        assert latitude(await rider_ws.next("car")) == 48.11

        await redis.crash()
        for server in (a, b):
            body = await server.wait_health(503)
            assert "broadcast" in body["failed"], body
            assert "database" not in body["failed"], body

        # Redis is down: the API keeps working (publishing fails quietly after commit).
        await set_status(a, driver, tid, "IN_PROGRESS")
        # Positions live only in Redis (PROTOCOL.md, dispatch): none is taken meanwhile,
        # and trips are served without one.
        where = {"latitude": 48.12, "longitude": 13.4, "heading": 90.0}
        body = await gql(
            a.http, REPORT_LOCATION, {"tripId": tid, "location": where}, token=driver.access
        )
        assert error_code(body) == "SERVICE_UNAVAILABLE", body
        seen = await ok(b.http, TRIP, {"id": tid}, rider)
        assert seen["trip"]["status"] == "IN_PROGRESS"
        assert seen["trip"]["driverLocation"] is None
        body = await gql(b.http, LOG_IN, {"username": rider.username, "password": PASSWORD})
        assert not body.get("errors"), body  # the login limiter fails open
        # A stream opened meanwhile (no position known: nothing first) heals like the others.
        await driver_ws.subscribe("car", DRIVER_LOCATION, {"tripId": tid})
        # The outage itself, not a synchronisation: it lasts a few reconnect attempts, so
        # the servers are backing off when Redis comes back.
        await asyncio.sleep(1.5)

        await redis.start()
        # Same sockets, no resubscription: each stream re-sends the current state, and
        # nothing else comes first.
        # (The restarted Redis holds no position: the location streams have none to send.)
        got = await asyncio.gather(
            rider_ws.until("trip", is_status("IN_PROGRESS"), skip=never),
            driver_ws.until("trip", is_status("IN_PROGRESS"), skip=never),
        )
        assert got[0]["tripUpdated"]["driver"]["username"] == driver.username
        elapsed = time.monotonic() - redis.started_at
        log.info("streams resynced %.2fs after redis-server was restarted", elapsed)
        for server in (a, b):
            assert (await server.wait_health(200))["status"] == "ok"

        # And live events flow again, both ways (a resync may repeat the last state).
        await report(a, driver, tid, 48.13)
        for ws in (rider_ws, driver_ws):
            await ws.until("car", is_lat(48.13), skip=is_lat(48.11))
        await set_status(b, driver, tid, "COMPLETED")
        in_progress = is_status("IN_PROGRESS")
        done = await rider_ws.until("trip", is_status("COMPLETED"), skip=in_progress)
        assert done["tripUpdated"]["driver"]["username"] == driver.username
        await driver_ws.until("trip", is_status("COMPLETED"), skip=in_progress)


async def test_concurrent_accepts_have_one_winner(cluster: list[TaxiServer]) -> None:
    servers = cluster
    rider = await account(servers[0].http)
    drivers = await asyncio.gather(*(account(servers[i % 2].http, "DRIVER") for i in range(20)))
    trip = await request_trip(servers[1].http, rider)

    async def accept(i: int, driver: Account) -> dict[str, Any]:
        server = servers[i % 2]  # ten through each process
        return await gql(server.http, ACCEPT_TRIP, {"id": trip["id"]}, token=driver.access)

    results = await asyncio.gather(*(accept(i, d) for i, d in enumerate(drivers)))

    winners = [r["data"]["acceptTrip"] for r in results if not r.get("errors")]
    assert len(winners) == 1, results
    assert sorted(error_code(r) for r in results if r.get("errors")) == ["CONFLICT"] * 19
    winner = winners[0]["driver"]["username"]
    assert winner in {d.username for d in drivers}
    assert winners[0]["status"] == "STARTED"
    for server in servers:
        seen = await ok(server.http, TRIP, {"id": trip["id"]}, rider)
        assert seen["trip"]["status"] == "STARTED"
        assert seen["trip"]["driver"]["username"] == winner


async def test_login_limit_is_shared_by_processes(cluster: list[TaxiServer]) -> None:
    """The failure counter lives in Redis (on a cluster: in its key's slot), so failures
    through either process lock the name out on both."""
    a, b = cluster
    rider = await account(a.http)
    max_failures = 5  # LOGIN_MAX_FAILURES's default
    for i in range(max_failures):
        body = await gql(
            cluster[i % 2].http, LOG_IN, {"username": rider.username, "password": "no"}
        )
        assert error_code(body) == "UNAUTHENTICATED"
    for server in (a, b):
        body = await gql(server.http, LOG_IN, {"username": rider.username, "password": PASSWORD})
        assert error_code(body) == "RATE_LIMITED"
    key = f"{SESSION_PREFIX}:login:{usernames.normalize(rider.username)}"
    client = cluster_client(a.redis) if a.sharded else aioredis.Redis.from_url(a.redis)
    try:
        # Every attempt is counted before any password is checked: 5 + the 2 refused.
        count = await client.get(key)
        assert count is not None and int(count) == max_failures + 2
    finally:
        await client.aclose()
