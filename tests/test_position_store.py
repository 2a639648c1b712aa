"""The position store's batch of reports and the supply a market counts (estimateFare's
carsNearby and surge, requestTrip's surge): `supply` finds exactly what `nearest` finds,
counted where the positions are (a script on Redis); each report's fix is kept exactly,
near a pole too — on the embedded store, a real Redis and a cluster."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from taxi.core.cluster import cluster_client
from taxi.domain.positions import METERS_PER_DEGREE, Fix, MemoryPositions, PositionStore, Report
from taxi.domain.positions_redis import RedisPositions
from taxi.domain.routes import Estimator
from tests.backends import REDIS_URL, need_real, sub_prefix

CENTER = (48.137, 11.575)
RADIUS = 3000.0
STALE_AFTER = 60.0


def scatter(seed: int) -> list[Report]:
    """400 drivers within ~5 km of the centre (so some are beyond the radius), two of
    them at exactly the same spot (ties go to the lower id), a quarter of them stale."""
    rng = random.Random(seed)
    now = time.time()
    reports = []
    for driver in range(1, 401):
        north, east = (rng.uniform(-5000, 5000) for _ in range(2))
        at = now - (STALE_AFTER * 2 if rng.random() < 0.25 else rng.uniform(0, 10))
        if driver in (2, 3):
            north, east, at = 10.0, 10.0, now
        lat = CENTER[0] + north / METERS_PER_DEGREE
        lon = CENTER[1] + east / METERS_PER_DEGREE
        reports.append(Report(driver, Fix(lat, lon, None, at), True))
    return reports


async def check(store: PositionStore) -> None:
    await store.report_many(scatter(7))
    fresh_after = time.time() - STALE_AFTER
    for cap, radius, point in [
        (200, RADIUS, CENTER),
        (5, RADIUS, CENTER),
        (1000, RADIUS, CENTER),
        (3, 400.0, CENTER),
        (200, 100.0, (CENTER[0] + 0.5, CENTER[1])),  # nobody there
    ]:
        found = await store.nearest(
            latitude=point[0],
            longitude=point[1],
            radius=radius,
            count=cap,
            fresh_after=fresh_after,
        )
        for k in (1, 5):
            count, nearest = await store.supply(
                latitude=point[0],
                longitude=point[1],
                radius=radius,
                cap=cap,
                fresh_after=fresh_after,
                nearest=k,
            )
            # The count, and the k nearest as `nearest` finds them (a request's first
            # wave takes them from here).
            assert count == len(found)
            assert [n.driver_id for n in nearest] == [n.driver_id for n in found[:k]]
            assert [n.fix for n in nearest] == [n.fix for n in found[:k]]
            for one, other in zip(nearest, found, strict=False):
                assert one.distance == pytest.approx(other.distance)
    # The two drivers on one spot: the lower id is the nearest.
    count, nearest = await store.supply(
        latitude=CENTER[0] + 10 / METERS_PER_DEGREE,
        longitude=CENTER[1] + 10 / METERS_PER_DEGREE,
        radius=1.0,
        cap=10,
        fresh_after=fresh_after,
    )
    assert count == 2 and [n.driver_id for n in nearest] == [2]


async def check_reports(store: PositionStore) -> None:
    """A batch of reports as the store records it: each fix kept exactly, its driver's
    state answered in order; a car near a pole (past the geo index's latitude) is found
    where it is."""
    now = time.time()
    fixes = {
        1: Fix(89.5, 10.123456789012345, 270.5, now),
        2: Fix(-89.99, -179.9, None, now - 1.5),
        3: Fix(48.137, 11.575, None, now),
    }
    reports = [Report(d, fix, d != 3) for d, fix in fixes.items()]
    states = await store.report_many(reports)
    assert [s.availability.name for s in states] == ["AVAILABLE", "AVAILABLE", "OFFLINE"]
    for driver in (1, 2):
        _, fix = await store.status(driver_id=driver)
        assert fix == fixes[driver]
        found = await store.nearest(
            latitude=fixes[driver].latitude,
            longitude=fixes[driver].longitude,
            radius=1000,
            count=5,
            fresh_after=now - 60,
        )
        assert [n.driver_id for n in found] == [driver]
    assert (await store.status(driver_id=3))[1] is None


def redis_store(client: aioredis.Redis | object) -> RedisPositions:
    return RedisPositions(
        client,  # type: ignore[arg-type]
        prefix=sub_prefix("supply"),
        estimator=Estimator(),
        arrival_meters=50,
    )


async def test_store_embedded() -> None:
    await check(MemoryPositions(estimator=Estimator(), arrival_meters=50))
    await check_reports(MemoryPositions(estimator=Estimator(), arrival_meters=50))


@pytest.fixture
async def real_redis() -> AsyncIterator[aioredis.Redis]:
    need_real()
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.mark.parametrize("backend", ["real"])
async def test_store_on_redis(backend: str, real_redis: aioredis.Redis) -> None:
    await check(redis_store(real_redis))
    await check_reports(redis_store(real_redis))


async def test_store_on_a_cluster(redis_cluster_url: str) -> None:
    client = cluster_client(redis_cluster_url)
    await client.initialize()
    try:
        await check(redis_store(client))
        await check_reports(redis_store(client))
    finally:
        await client.aclose()
