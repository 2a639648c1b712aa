"""Waves across real server processes sharing PostgreSQL + Redis: each wave exactly once,
also when the process that scheduled the trip is killed (SIGKILL) between waves, and
offers reaching a driver's socket on whichever process holds it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taxi.domain import events
from taxi.domain.positions import METERS_PER_DEGREE
from tests.backends import REDIS_URL, base_settings, sub_prefix
from tests.helpers import (
    ACCEPT_TRIP,
    TRIP,
    TRIP_REQUESTED,
    UPDATE_STATUS,
    account,
    error_code,
    gql,
)
from tests.live import serve
from tests.procs import TaxiServer, redis_server, taxi_servers
from tests.streams import numsub
from tests.wait import eventually
from tests.ws import session

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

DEADLINE = 30.0
RINGS = (100, 200, 300, 400, 500)  # metres from the pick-up; one driver each
PREFIX = sub_prefix("dispatch-cluster")
GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
REQUEST = """mutation R($input: RequestTripInput!) { requestTrip(input: $input) { id } }"""
UPDATE = "mutation U($p: LocationInput!) { updatePosition(position: $p) { availability } }"


@pytest.fixture
async def cluster(pg_database: str, tmp_path: Path) -> AsyncIterator[list[TaxiServer]]:
    env = {
        "CHANNEL_PREFIX": PREFIX,
        # One driver per wave, every wave within the same 1 km: a wave run twice would
        # show as two offers with one wave number.
        "DISPATCH_RADIUS_METERS": "1000",
        "DISPATCH_MAX_RADIUS_METERS": "1000",
        "DISPATCH_BATCH_SIZE": "1",
        "DISPATCH_WAVE_SECONDS": "1",
    }
    async with taxi_servers(
        ["a", "b"], database_url=pg_database, redis_url=REDIS_URL, log_dir=tmp_path, extra_env=env
    ) as servers:
        yield servers


def north(meters: float) -> dict[str, float]:
    return {"latitude": 48.0 + meters / METERS_PER_DEGREE, "longitude": 11.0}


async def offers(engine: AsyncEngine, trip_id: str) -> list[tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT wave, driver_id FROM trip_offer WHERE trip_id = :t"),
            {"t": uuid.UUID(trip_id)},
        )
        return sorted((w, d) for w, d in rows)


async def next_wave(engine: AsyncEngine, trip_id: str) -> int:
    async with engine.connect() as conn:
        wave = await conn.scalar(
            text("SELECT wave FROM dispatch_wave WHERE trip_id = :t"), {"t": uuid.UUID(trip_id)}
        )
        return -1 if wave is None else int(wave)


async def test_waves_survive_a_killed_process_exactly_once(
    cluster: list[TaxiServer], pg_engine: AsyncEngine
) -> None:
    a, b = cluster
    rider = await account(a.http)
    drivers = [await account(a.http, "DRIVER") for _ in RINGS]
    for driver, meters in zip(drivers, RINGS, strict=True):
        body = await gql(a.http, GO_ONLINE, {"p": north(meters)}, token=driver.access)
        assert body["data"]["goOnline"]["availability"] == "AVAILABLE", body
    last = drivers[-1]
    async with session(b.ws_url, last.access, interleaved=True) as ws:
        await ws.subscribe("req", TRIP_REQUESTED, {})
        channel = events.full_channel(PREFIX, events.driver_channel(int(last.id)))
        await eventually(lambda: numsub(b, channel), lambda n: n > 0, within=DEADLINE)

        where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": north(0)}
        body = await gql(a.http, REQUEST, {"input": where}, token=rider.access)
        trip_id = body["data"]["requestTrip"]["id"]
        ids = [int(d.id) for d in drivers]
        await eventually(lambda: offers(pg_engine, trip_id), lambda o: len(o) >= 2, within=DEADLINE)
        await asyncio.to_thread(a.proc.stop, kill=True)  # between waves

        want = [(wave, driver) for wave, driver in enumerate(ids)]
        await eventually(
            lambda: offers(pg_engine, trip_id), lambda o: len(o) >= len(RINGS), within=DEADLINE
        )
        # Two more waves found nobody: nothing was offered twice, nothing skipped.
        await eventually(
            lambda: next_wave(pg_engine, trip_id), lambda w: w >= len(RINGS) + 2, within=DEADLINE
        )
        assert await offers(pg_engine, trip_id) == want
        # The last wave ran on b after a died, and reached the driver's socket there.
        got = await ws.next("req", within=DEADLINE)
        assert got["tripRequested"]["id"] == trip_id


async def test_redis_outage_keeps_trips_served(pg_database: str, tmp_path: Path) -> None:
    """Positions are ephemeral: without Redis a trip is still served (no position), the
    lifecycle still commits, a request still succeeds (its first wave offers nobody), and
    a position report is SERVICE_UNAVAILABLE."""
    async with redis_server(tmp_path) as redis:
        settings = base_settings(
            database_url=pg_database,
            redis_url=redis.url,
            media_root=tmp_path / "media",
            channel_prefix=sub_prefix("outage"),
        )
        async with serve(settings) as live, live.http() as client:
            rider, other = await account(client), await account(client)
            driver = await account(client, "DRIVER")
            await gql(client, GO_ONLINE, {"p": north(0)}, token=driver.access)
            where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": north(0)}
            body = await gql(client, REQUEST, {"input": where}, token=rider.access)
            trip_id = body["data"]["requestTrip"]["id"]
            assert "errors" not in await gql(
                client, ACCEPT_TRIP, {"id": trip_id}, token=driver.access
            )
            update = {"p": north(10)}
            assert "errors" not in await gql(client, UPDATE, update, token=driver.access)
            seen = await gql(client, TRIP, {"id": trip_id}, token=rider.access)
            assert seen["data"]["trip"]["driverLocation"] is not None

            await redis.crash()
            seen = await gql(client, TRIP, {"id": trip_id}, token=rider.access)
            assert "errors" not in seen, seen
            assert seen["data"]["trip"]["driverLocation"] is None
            body = await gql(client, UPDATE, update, token=driver.access)
            assert error_code(body) == "SERVICE_UNAVAILABLE"
            for status in ("IN_PROGRESS", "COMPLETED"):
                body = await gql(
                    client, UPDATE_STATUS, {"id": trip_id, "status": status}, token=driver.access
                )
                assert body["data"]["updateTripStatus"]["status"] == status, body
            body = await gql(client, REQUEST, {"input": where}, token=other.access)
            assert "errors" not in body, body
