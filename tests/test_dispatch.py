"""Dispatch near the pick-up (PROTOCOL.md): availability, positions, nearbyCars, waves of
offers and who may see a dispatched trip; on both backends."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from taxi.core.config import Settings
from taxi.domain import events
from taxi.domain.models import DispatchWave, Trip, TripOffer
from taxi.domain.positions import METERS_PER_DEGREE, distance
from tests.backends import base_settings, sub_prefix
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    DRIVER_LOCATION,
    TRIP,
    TRIP_FIELDS,
    TRIP_REQUESTED,
    TRIP_UPDATED,
    TRIPS_UPDATED,
    UPDATE_STATUS,
    Account,
    account,
    error_code,
    gql,
    ok,
    request_trip,
)
from tests.live import LiveServer, watching
from tests.wait import eventually
from tests.ws import WsClient, session

T = TypeVar("T")
BASE = (52.52, 13.40)

STATE = "{ driverState { availability position { latitude longitude heading } } }"
GO_ONLINE = """mutation On($p: LocationInput!) {
  goOnline(position: $p) { availability position { latitude longitude heading } } }"""
GO_OFFLINE = "mutation { goOffline { availability position { latitude } } }"
UPDATE = """mutation Up($p: LocationInput!) {
  updatePosition(position: $p) { availability position { latitude longitude } } }"""
NEARBY = """query Near($near: PointInput!, $r: Int, $first: Int) {
  nearbyCars(near: $near, radiusMeters: $r, first: $first) {
    distanceMeters location { latitude longitude } } }"""
REQUEST = f"""mutation R($input: RequestTripInput!) {{
  requestTrip(input: $input) {{ {TRIP_FIELDS} pickUp {{ latitude longitude }}
    dropOff {{ latitude longitude }} }} }}"""
TRIPS = "{ trips(first: 50) { totalCount edges { node { id status } } } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Its own key prefix per test (positions are shared Redis state; user ids restart
    at 1 in every test), and waves a fraction of a second apart."""
    return base_settings(
        **{
            **settings.model_dump(include={"database_url", "redis_url", "media_root"}),
            "channel_prefix": sub_prefix("dispatch"),
            "dispatch_radius_meters": 1000,
            "dispatch_max_radius_meters": 4000,
            "dispatch_batch_size": 2,
            "dispatch_wave_seconds": 0.4,
        }
    )


def north(meters: float) -> dict[str, float]:
    """A point `meters` north of BASE."""
    return {"latitude": BASE[0] + meters / METERS_PER_DEGREE, "longitude": BASE[1]}


async def online(client: httpx.AsyncClient, meters: float) -> Account:
    driver = await account(client, "DRIVER")
    data = await ok(client, GO_ONLINE, {"p": north(meters)}, driver)
    assert data["goOnline"]["availability"] == "AVAILABLE"
    return driver


async def dispatched(client: httpx.AsyncClient, rider: Account, meters: float = 0) -> Any:
    where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": north(meters)}
    return (await ok(client, REQUEST, {"input": where}, rider))["requestTrip"]


async def offers(app: Any, trip_id: str) -> list[tuple[int, int]]:
    """(wave, driver) of every offer of the trip, as stored."""
    async with app.state.services.db() as s:
        rows = await s.execute(
            select(col(TripOffer.wave), col(TripOffer.driver_id)).where(
                col(TripOffer.trip_id) == uuid.UUID(trip_id)
            )
        )
        return sorted((w, d) for w, d in rows)


# -- availability -------------------------------------------------------------------------


async def test_availability_follows_the_trip(client: httpx.AsyncClient) -> None:
    driver, rider = await account(client, "DRIVER"), await account(client)
    assert (await ok(client, STATE, {}, driver))["driverState"] == {
        "availability": "OFFLINE",
        "position": None,
    }
    # Offline: a position is refused (CONFLICT) and nothing is stored.
    body = await gql(client, UPDATE, {"p": north(0)}, token=driver.access)
    assert error_code(body) == "CONFLICT"
    assert (await ok(client, STATE, {}, driver))["driverState"]["position"] is None

    p = {**north(10), "heading": 45.0}
    state = (await ok(client, GO_ONLINE, {"p": p}, driver))["goOnline"]
    assert state == {"availability": "AVAILABLE", "position": p}
    moved = (await ok(client, UPDATE, {"p": north(20)}, driver))["updatePosition"]
    assert moved["position"]["latitude"] == pytest.approx(north(20)["latitude"])

    trip = await request_trip(client, rider)  # no pick-up: every driver's, as before
    await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, driver)
    assert (await ok(client, STATE, {}, driver))["driverState"]["availability"] == "ON_TRIP"
    assert error_code(await gql(client, GO_OFFLINE, token=driver.access)) == "CONFLICT"
    for status in ("IN_PROGRESS", "COMPLETED"):
        await ok(client, UPDATE_STATUS, {"id": trip["id"], "status": status}, driver)
    assert (await ok(client, STATE, {}, driver))["driverState"]["availability"] == "AVAILABLE"
    assert (await ok(client, GO_OFFLINE, {}, driver))["goOffline"] == {
        "availability": "OFFLINE",
        "position": None,
    }


async def test_canceled_trip_makes_the_driver_available(client: httpx.AsyncClient) -> None:
    driver, rider = await online(client, 0), await account(client)
    trip = await dispatched(client, rider)
    await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, driver)
    assert (await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"] == []
    await ok(client, CANCEL_TRIP, {"id": trip["id"]}, rider)
    assert (await ok(client, STATE, {}, driver))["driverState"]["availability"] == "AVAILABLE"
    assert len((await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"]) == 1


async def test_riders_cannot_use_driver_operations(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    for query, variables in (
        (GO_ONLINE, {"p": north(0)}),
        (GO_OFFLINE, {}),
        (UPDATE, {"p": north(0)}),
        (STATE, {}),
    ):
        assert error_code(await gql(client, query, variables, token=rider.access)) == "FORBIDDEN"
    assert (await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"] == []
    assert error_code(await gql(client, NEARBY, {"near": north(0)})) == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("position", "field"),
    [
        ({"latitude": 90.5, "longitude": 0}, "latitude"),
        ({"latitude": 0, "longitude": -180.5}, "longitude"),
        ({"latitude": 0, "longitude": 0, "heading": 360.0}, "heading"),
    ],
)
async def test_coordinates_out_of_range(
    client: httpx.AsyncClient, position: dict[str, float], field: str
) -> None:
    driver, rider = await account(client, "DRIVER"), await account(client)
    for query in (GO_ONLINE, UPDATE):
        body = await gql(client, query, {"p": position}, token=driver.access)
        assert error_code(body) == "BAD_USER_INPUT"
        assert field in body["errors"][0]["extensions"]["fields"], body
    assert (await ok(client, STATE, {}, driver))["driverState"]["availability"] == "OFFLINE"
    if field != "heading":
        where = {"pickUpAddress": "A", "dropOffAddress": "B", "dropOff": position}
        body = await gql(client, REQUEST, {"input": where}, token=rider.access)
        assert error_code(body) == "BAD_USER_INPUT"
        assert list(body["errors"][0]["extensions"]["fields"]) == ["dropOff"]
        assert (await ok(client, TRIPS, {}, rider))["trips"]["totalCount"] == 0
        body = await gql(client, NEARBY, {"near": position}, token=rider.access)
        assert field in body["errors"][0]["extensions"]["fields"], body


# -- nearbyCars -----------------------------------------------------------------------------


async def test_nearby_cars_nearest_first_bounded(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    for meters in (900, 100, 500, 3000):
        await online(client, meters)
    busy = await online(client, 50)
    await ok(client, GO_OFFLINE, {}, await online(client, 60))
    trip = await request_trip(client, rider)
    await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, busy)

    def shown(meters: float) -> int:
        """The distance nearbyCars shows: to the car's point rounded to ~100 m."""
        return round(distance(*BASE, round(north(meters)["latitude"], 3), BASE[1]))

    cars = (await ok(client, NEARBY, {"near": north(0), "r": 1000}, rider))["nearbyCars"]
    assert [round(c["distanceMeters"]) for c in cars] == [shown(100), shown(500), shown(900)]
    assert set(cars[0]) == {"distanceMeters", "location"}  # anonymous by shape
    two = await ok(client, NEARBY, {"near": north(0), "r": 5000, "first": 2}, rider)
    assert [round(c["distanceMeters"]) for c in two["nearbyCars"]] == [shown(100), shown(500)]
    for variables, field in (({"r": 10_001}, "radiusMeters"), ({"first": 51}, "first")):
        body = await gql(client, NEARBY, {"near": north(0), **variables}, token=rider.access)
        assert error_code(body) == "BAD_USER_INPUT"
        assert field in body["errors"][0]["extensions"]["fields"]


async def test_stale_positions_are_left_out(client: httpx.AsyncClient, app: Any) -> None:
    app.state.settings.position_ttl = 0.5  # the services share this settings object
    rider, driver = await account(client), await online(client, 100)
    assert len((await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"]) == 1
    await eventually(
        lambda: ok(client, NEARBY, {"near": north(0)}, rider), lambda d: not d["nearbyCars"]
    )
    assert (await ok(client, STATE, {}, driver))["driverState"] == {
        "availability": "AVAILABLE",
        "position": None,
    }
    trip = await dispatched(client, rider)
    assert await offers(app, trip["id"]) == []
    await ok(client, UPDATE, {"p": north(100)}, driver)  # fresh again
    assert len((await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"]) == 1


# -- waves ------------------------------------------------------------------------------------


async def test_waves_widen_to_the_next_nearest(client: httpx.AsyncClient, app: Any) -> None:
    rider = await account(client)
    # Batch 2, radius 1000 m doubling to 4000 m (the fixture's settings).
    near = [await online(client, m) for m in (200, 400, 600)]
    mid, far, beyond = (
        await online(client, 1500),
        await online(client, 3500),
        await online(client, 6000),
    )
    trip = await dispatched(client, rider)
    assert trip["pickUp"] == {"latitude": BASE[0], "longitude": BASE[1]}
    ids = {a.id: a for a in [*near, mid, far, beyond]}
    first = [(0, int(near[0].id)), (0, int(near[1].id))]
    assert await offers(app, trip["id"]) == first  # with the request, in its transaction
    want = [*first, (1, int(near[2].id)), (1, int(mid.id)), (2, int(far.id))]
    await eventually(lambda: offers(app, trip["id"]), lambda o: o == want)

    async def next_wave() -> int:
        async with app.state.services.db() as s:
            row = await s.get(DispatchWave, uuid.UUID(trip["id"]))
            return row.wave if row else -1

    await eventually(next_wave, lambda w: w >= 5)  # waves 3 and 4 at 4000 m found nobody
    assert await offers(app, trip["id"]) == want

    # Only offered drivers see it, and may take it.
    assert error_code(await gql(client, TRIP, {"id": trip["id"]}, token=beyond.access)) == (
        "NOT_FOUND"
    )
    assert (await ok(client, TRIPS, {}, beyond))["trips"]["totalCount"] == 0
    assert (await ok(client, TRIPS, {}, far))["trips"]["totalCount"] == 1
    body = await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=beyond.access)
    assert error_code(body) == "NOT_FOUND"
    await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, far)
    assert error_code(await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=near[0].access)) == (
        "CONFLICT"
    )
    assert (await ok(client, TRIPS, {}, near[0]))["trips"]["totalCount"] == 0
    await eventually(next_wave, lambda w: w == -1)  # the schedule ends with the request
    assert len(ids) == 6


async def test_accept_race_on_a_dispatched_trip(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    drivers = [await online(client, m) for m in (100, 200)]
    trip = await dispatched(client, rider)
    bodies = await asyncio.gather(
        *(gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=d.access) for d in drivers)
    )
    winners = [b for b in bodies if "errors" not in b]
    assert len(winners) == 1
    assert [error_code(b) for b in bodies if "errors" in b] == ["CONFLICT"]


async def test_without_pick_up_every_driver_sees_it(client: httpx.AsyncClient, app: Any) -> None:
    rider, far = await account(client), await online(client, 50_000)
    offline = await account(client, "DRIVER")
    trip = await request_trip(client, rider)
    for driver in (far, offline):
        assert (await ok(client, TRIP, {"id": trip["id"]}, driver))["trip"]["id"] == trip["id"]
    async with app.state.services.db() as s:
        # No waves: its schedule holds only its expiry (PROTOCOL.md, DISPATCH_TIMEOUT_SECONDS).
        (row,) = (await s.scalars(select(DispatchWave))).all()
        assert row.due_at == row.expires_at
        assert (await s.scalars(select(TripOffer))).all() == []


# -- live: offers reach only the offered, positions reach the rider ----------------------------


async def firsts(ws: WsClient) -> dict[str, str]:
    """The trip id of the first result of each of the two operations "req" and "all"."""
    got: dict[str, str] = {}
    while len(got) < 2:
        message = await ws.recv()
        assert message["type"] == "next", message
        got.setdefault(message["id"], next(iter(message["payload"]["data"].values()))["id"])
    return got


async def test_offers_reach_only_offered_drivers(server: LiveServer) -> None:
    async with server.http() as client:
        rider, other_rider, third_rider = [await account(client) for _ in range(3)]
        offered, taker = await online(client, 100), await online(client, 150)
        passed_over = await online(client, 9000)
        async with (
            session(server.ws_url, offered.access) as a,
            session(server.ws_url, passed_over.access) as b,
        ):
            for ws in (a, b):
                await ws.subscribe("req", TRIP_REQUESTED)
                await ws.subscribe("all", TRIPS_UPDATED)
            for driver in (offered, passed_over):
                await watching(server.app, events.driver_channel(int(driver.id)))
            trip = await dispatched(client, rider)
            # A trip without pick-up afterwards: the first thing the passed-over driver
            # hears of, on both operations; the dispatched one never reached them.
            marker = await request_trip(client, other_rider)
            assert await firsts(a) == {"req": trip["id"], "all": trip["id"]}
            assert await firsts(a) == {"req": marker["id"], "all": marker["id"]}
            assert await firsts(b) == {"req": marker["id"], "all": marker["id"]}
            await b.subscribe("one", TRIP_UPDATED, {"id": trip["id"]})
            assert (await b.error("one"))["extensions"]["code"] == "NOT_FOUND"

            # Taken by another offered driver: the offered loser learns that it left the
            # pool (without who took it); the passed-over driver hears nothing of it.
            await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, taker)
            left = (await a.next("all"))["tripsUpdated"]
            assert (left["id"], left["status"], left["driver"]) == (trip["id"], "STARTED", None)
            marker = await request_trip(client, third_rider)
            assert (await b.next("all"))["tripsUpdated"]["id"] == marker["id"]


async def test_positions_reach_the_rider_without_a_row_write(
    server: LiveServer,
) -> None:
    async with server.http() as client:
        rider, driver = await account(client), await online(client, 100)
        trip = await dispatched(client, rider)
        await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, driver)
        async with server.app.state.services.db() as s:
            before = await s.get(Trip, uuid.UUID(trip["id"]))
        await ok(client, UPDATE, {"p": north(90)}, driver)  # the trip's first location
        async with session(server.ws_url, rider.access) as ws:
            await ws.subscribe("loc", DRIVER_LOCATION, {"tripId": trip["id"]})
            # The current state comes first: once it is here the subscription is live and
            # has read it, so each report below arrives once, as a change. (Waiting for a
            # watcher on the channel was not enough: a report could land between that and
            # the read, and came twice, as the current state and as the change.)
            first = (await ws.next("loc"))["driverLocation"]
            assert first["latitude"] == pytest.approx(north(90)["latitude"])
            for meters in (80, 60):
                await ok(client, UPDATE, {"p": north(meters)}, driver)
                got = (await ws.next("loc"))["driverLocation"]
                assert got["latitude"] == pytest.approx(north(meters)["latitude"])
        seen = (await ok(client, TRIP, {"id": trip["id"]}, rider))["trip"]["driverLocation"]
        assert seen["latitude"] == pytest.approx(north(60)["latitude"])
        async with server.app.state.services.db() as s:
            after = await s.get(Trip, uuid.UUID(trip["id"]))
        assert after == before  # no PostgreSQL write per position report


def _counter(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


async def test_metrics_count_waves_offers_and_positions(client: httpx.AsyncClient) -> None:
    names = ("taxi_dispatch_waves_total", "taxi_dispatch_offers_total", "taxi_positions_total")
    before = (await client.get("/metrics")).text
    rider, driver = await account(client), await online(client, 100)
    await ok(client, UPDATE, {"p": north(90)}, driver)
    await dispatched(client, rider)
    after = (await client.get("/metrics")).text
    # This process's counters: other tests in it only add, so count the difference
    # (goOnline reports a position too; the worker may already have run the next wave).
    waves, offers, positions = (_counter(after, n) - _counter(before, n) for n in names)
    assert waves >= 1 and offers == 1 and positions == 2, (waves, offers, positions)
