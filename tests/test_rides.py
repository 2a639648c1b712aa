"""Fares and the ride's life (rides.graphql, PROTOCOL.md): quotes, the tariff, surge, the
router and its fallback, held and final fares, ETAs, arrival, releaseTrip and no-shows,
expiry, deactivation, earnings; on both backends, against a real local OSRM-speaking
router (tests/osrm.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.migrate import upgrade
from taxi.domain import events
from taxi.domain.fares import MAX_AMOUNT, MAX_METERS, Tariff
from taxi.domain.models import (
    CancelReason,
    DispatchWave,
    Trip,
    TripOffer,
    TripStatus,
    UTCDateTime,
)
from taxi.domain.positions import METERS_PER_DEGREE, distance
from taxi.domain.quotes import Quote
from taxi.domain.routes import Estimator
from taxi.domain.services import deactivation
from taxi.main import create_app
from tests.backends import Backend, base_settings, empty_database, sub_prefix
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    TRIP_FIELDS,
    Account,
    account,
    error_code,
    gql,
    ok,
)
from tests.live import LiveServer, watching
from tests.osrm import FakeOsrm, fake_osrm
from tests.wait import eventually
from tests.ws import session

BASE = (52.52, 13.40)
RIDE = f"""{TRIP_FIELDS} pickUp {{ latitude longitude }} dropOff {{ latitude longitude }}
cancelReason arrivedAt pickUpEtaSeconds dropOffEtaSeconds
fare {{ quoted {{ amount currency }} final {{ amount currency }} distanceMeters
        durationSeconds surge }}"""
ESTIMATE = """query E($p: PointInput!, $d: PointInput!) {
  estimateFare(pickUp: $p, dropOff: $d) {
    id distanceMeters durationSeconds surge price { amount currency } carsNearby
    pickUpEtaSeconds expiresAt pickUp { latitude longitude } dropOff { latitude longitude } } }"""
REQUEST = f"""mutation R($input: RequestTripInput!) {{ requestTrip(input: $input) {{ {RIDE} }} }}"""
TRIP = f"query T($id: ID!) {{ trip(id: $id) {{ {RIDE} }} }}"
STATUS = f"""mutation S($id: ID!, $s: TripStatus!) {{
  updateTripStatus(id: $id, status: $s) {{ {RIDE} }} }}"""
RELEASE = f"""mutation Rel($id: ID!, $noShow: Boolean) {{
  releaseTrip(id: $id, noShow: $noShow) {{ {RIDE} }} }}"""
EARNINGS = """query E($from: DateTime!, $to: DateTime!) {
  earnings(from: $from, to: $to) { trips total { amount currency } distanceMeters } }"""
GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
UPDATE = "mutation Up($p: LocationInput!) { updatePosition(position: $p) { availability } }"
STATE = "{ driverState { availability } }"
NEARBY = """query N($near: PointInput!) {
  nearbyCars(near: $near, radiusMeters: 5000) { distanceMeters etaSeconds } }"""
WATCH = f"subscription W($id: ID!) {{ tripUpdated(id: $id) {{ {RIDE} }} }}"
FOLLOW = """subscription F($tripId: ID!) {
  driverLocation(tripId: $tripId) { latitude etaSeconds } }"""
OFFERS = f"subscription {{ tripRequested {{ {RIDE} }} }}"


def north(meters: float) -> dict[str, float]:
    return {"latitude": BASE[0] + meters / METERS_PER_DEGREE, "longitude": BASE[1]}


def pair(point: dict[str, float]) -> tuple[float, float]:
    return point["latitude"], point["longitude"]


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test changes (parametrize `overrides` to change them)."""
    return {}


@pytest.fixture
async def osrm() -> AsyncIterator[FakeOsrm]:
    async with fake_osrm() as router:
        yield router


@pytest.fixture
def settings(settings: Settings, osrm: FakeOsrm, overrides: dict[str, Any]) -> Settings:
    """Its own key prefix (positions are shared Redis state), dropped after the test; the
    fake router, waves a fraction of a second apart, requests that outlive the test
    unless it says otherwise."""
    mine = base_settings(
        **{
            **settings.model_dump(include={"database_url", "redis_url", "media_root"}),
            "channel_prefix": sub_prefix("rides"),
            "router_url": osrm.url,
            # Exact prices from the fake router whatever the machine's load; the fallback
            # test below sets the deployment's 300 ms.
            "router_timeout_seconds": 5.0,
            "dispatch_radius_meters": 1000,
            "dispatch_max_radius_meters": 4000,
            "dispatch_batch_size": 2,
            "dispatch_wave_seconds": 0.4,
            "dispatch_timeout_seconds": 120,
            **overrides,
        }
    )
    # Its keys go with the session's, after the test (tests/redis_keys.py).
    return mine


async def online(client: httpx.AsyncClient, meters: float) -> Account:
    driver = await account(client, "DRIVER")
    await ok(client, GO_ONLINE, {"p": north(meters)}, driver)
    return driver


async def quote(
    client: httpx.AsyncClient, rider: Account, to: float = 2000, at: float = 0
) -> dict[str, Any]:
    data = await ok(client, ESTIMATE, {"p": north(at), "d": north(to)}, rider)
    return dict(data["estimateFare"])


async def request(
    client: httpx.AsyncClient,
    rider: Account,
    *,
    quote_id: str | None = None,
    to: float = 2000,
    dispatched: bool = True,
) -> dict[str, Any]:
    where: dict[str, Any] = {"pickUpAddress": "A", "dropOffAddress": "B"}
    if dispatched:
        where |= {"pickUp": north(0), "dropOff": north(to)}
    if quote_id is not None:
        where["quoteId"] = quote_id
    return dict((await ok(client, REQUEST, {"input": where}, rider))["requestTrip"])


async def move(client: httpx.AsyncClient, driver: Account, meters: float) -> None:
    await ok(client, UPDATE, {"p": north(meters)}, driver)


async def trip(client: httpx.AsyncClient, who: Account, trip_id: str) -> dict[str, Any]:
    return dict((await ok(client, TRIP, {"id": trip_id}, who))["trip"])


async def step(client: httpx.AsyncClient, driver: Account, trip_id: str, status: str) -> Any:
    return (await ok(client, STATUS, {"id": trip_id, "s": status}, driver))["updateTripStatus"]


def estimate(settings: Settings, start: dict[str, float], end: dict[str, float]) -> tuple[int, int]:
    """The router-less route, computed here from the documented rule."""
    meters = distance(*pair(start), *pair(end)) * settings.route_factor
    return round(meters), round(meters / (settings.city_speed_kmh / 3.6))


# -- the tariff ------------------------------------------------------------------------------


def test_tariff_arithmetic_exactly() -> None:
    t = Tariff(currency="EUR", base=250, per_km=120, per_minute=30, minimum=700, surge_max=3.0)
    # 250 + 120 x 5 + 30 x 10 = 1150
    assert t.price(meters=5000, seconds=600, surge=1.0) == 1150
    # 250 + 120 x 7.777 + 30 x 16.6833.. = 1683.74 -> 1684; x 1.5 = 2525.61 -> 2526
    assert t.price(meters=7777, seconds=1001, surge=1.0) == 1684
    assert t.price(meters=7777, seconds=1001, surge=1.5) == 2526
    # Below the minimum: the minimum, then the surge on it.
    assert t.price(meters=1000, seconds=60, surge=1.0) == 700
    assert t.price(meters=1000, seconds=60, surge=2.0) == 1400
    # 250 + 120 x 3.5 + 30 x 1 = 700 (the minimum) x 1.15 = 805 (1.15 is no binary float here)
    assert t.price(meters=3500, seconds=60, surge=1.15) == 805
    assert t.price(meters=17500, seconds=2300, surge=1.0) == 250 + 2100 + 1150
    assert t.price(meters=12, seconds=21900, surge=1.0) == 250 + 1 + 10950  # 11201.44
    # Half a minor unit rounds up: 250 + 1200 + 30 x 1001/60 = 1950.5 -> 1951
    assert t.price(meters=10_000, seconds=1001, surge=1.0) == 1951
    # Surge: 1.0 while drivers outnumber or match requests, the ratio, at most the maximum.
    assert t.surge(demand=3, supply=5) == 1.0
    assert t.surge(demand=4, supply=4) == 1.0
    assert t.surge(demand=5, supply=2) == 2.5
    assert t.surge(demand=30, supply=2) == 3.0
    assert t.surge(demand=1, supply=0) == 3.0
    assert t.surge(demand=0, supply=0) == 1.0
    # final: the quote held up to +25 % driven, then the tariff over what was driven.
    assert (
        t.final(quoted=1150, quoted_meters=5000, surge=1.5, driven_meters=6250, seconds=9999)
        == 1150
    )
    assert t.final(
        quoted=1150, quoted_meters=5000, surge=1.5, driven_meters=6251, seconds=600
    ) == t.price(meters=6251, seconds=600, surge=1.5)
    assert t.final(quoted=None, quoted_meters=None, surge=1.0, driven_meters=0, seconds=0) == 700


# -- estimateFare: the router, its fallback, surge, the signed quote ---------------------------


async def test_quote_from_the_router(client: httpx.AsyncClient, osrm: FakeOsrm) -> None:
    rider = await account(client)
    osrm.meters, osrm.seconds = 7777.4, 1000.6  # OSRM's floats, rounded to whole units
    await online(client, 500)
    got = await quote(client, rider)
    assert (got["distanceMeters"], got["durationSeconds"]) == (7777, 1001)
    assert got["price"] == {"amount": 1684, "currency": "EUR"}
    assert got["surge"] == 1.0 and got["carsNearby"] == 1
    assert got["pickUp"] == north(0) and got["dropOff"] == north(2000)
    # The nearest car's ETA: the estimate over ~500 m (route factor, city speed), from the
    # car as nearbyCars shows it (rounded to ~100 m).
    car = (await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"][0]
    assert got["pickUpEtaSeconds"] == round(car["distanceMeters"] * 1.3 / (25 / 3.6))
    expires = datetime.fromisoformat(got["expiresAt"])
    assert timedelta(seconds=290) < expires - datetime.now(UTC) <= timedelta(seconds=300)
    # Riders only; points checked like every point.
    driver = await account(client, "DRIVER")
    points = {"p": north(0), "d": north(2000)}
    assert error_code(await gql(client, ESTIMATE, points, token=driver.access)) == "FORBIDDEN"
    assert error_code(await gql(client, ESTIMATE, points)) == "UNAUTHENTICATED"
    body = await gql(
        client, ESTIMATE, {**points, "d": {"latitude": 91, "longitude": 0}}, token=rider.access
    )
    assert error_code(body) == "BAD_USER_INPUT"
    assert list(body["errors"][0]["extensions"]["fields"]) == ["dropOff"]
    # OSRM's order: longitude first.
    lat, lon = north(2000)["latitude"], north(2000)["longitude"]
    assert osrm.paths[-1].startswith(f"/route/v1/driving/{BASE[1]!r},{BASE[0]!r};{lon!r},{lat!r}")


@pytest.mark.parametrize("overrides", [{"router_timeout_seconds": 0.3}])
@pytest.mark.parametrize("mode", ["slow", "error", "garbage"])
async def test_router_failure_falls_back_to_the_estimate(
    client: httpx.AsyncClient, osrm: FakeOsrm, settings: Settings, mode: Any
) -> None:
    rider = await account(client)
    osrm.mode = mode
    started = time.monotonic()
    got = await quote(client, rider)
    # A slow router costs its timeout (300 ms), not its answer (2 s).
    assert time.monotonic() - started < 1.5
    meters, seconds = estimate(settings, north(0), north(2000))
    assert (got["distanceMeters"], got["durationSeconds"]) == (meters, seconds) == (2600, 374)
    # 250 + 120 x 2.6 + 30 x 374/60 = 749 (the minimum, 700, is below it)
    assert got["price"]["amount"] == 749
    assert got["carsNearby"] == 0 and got["pickUpEtaSeconds"] is None


async def test_surge_is_demand_against_supply(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    driver = await online(client, 300)
    # Requests near the pick-up: two, against one available driver (offers leave them so).
    for _ in range(2):
        await request(client, await account(client))
    got = await quote(client, rider)
    assert (got["surge"], got["carsNearby"]) == (2.0, 1)
    assert got["price"]["amount"] == 2 * 1150  # the router's 5 km in 10 min, doubled
    # Elsewhere, no demand: 1.0. Here, nobody available any more: the maximum.
    far = await quote(client, rider, at=50_000, to=52_000)
    assert (far["surge"], far["carsNearby"]) == (1.0, 0)
    await ok(client, "mutation { goOffline { availability } }", {}, driver)
    got = await quote(client, rider)
    assert (got["surge"], got["carsNearby"], got["pickUpEtaSeconds"]) == (3.0, 0, None)
    assert got["price"]["amount"] == 3 * 1150


async def test_a_quote_is_checked_on_request(client: httpx.AsyncClient, settings: Settings) -> None:
    rider, other = await account(client), await account(client)
    good = (await quote(client, rider))["id"]
    payload, mac = good.split(".")
    assert settings.jwt_secret is not None
    expired = Quote(
        rider=int(rider.id),
        pick_up=pair(north(0)),
        drop_off=pair(north(2000)),
        meters=1,
        seconds=1,
        surge=1.0,
        price=1,
        expires=time.time() - 1,
    )
    cases = {
        "tampered": (rider, f"{payload[:-2]}AA.{mac}", 2000),
        "bad signature": (rider, f"{payload}.{mac[:-2]}AA", 2000),
        "garbage": (rider, "not-a-quote", 2000),
        "huge": (rider, "x" * 5000, 2000),
        "expired": (rider, expired.sign(secret=settings.jwt_secret), 2000),
        "another key": (rider, expired.sign(secret="another-secret-" + "z" * 40), 2000),
        "another rider": (other, good, 2000),
        "other points": (rider, good, 2100),
    }
    for name, (who, quote_id, to) in cases.items():
        where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": north(0)}
        where |= {"dropOff": north(to), "quoteId": quote_id}
        body = await gql(client, REQUEST, {"input": where}, token=who.access)
        assert error_code(body) == "BAD_USER_INPUT", (name, body)
        assert list(body["errors"][0]["extensions"]["fields"]) == ["quoteId"], (name, body)
    # Within ARRIVAL_METERS of the quoted points is the same ride.
    held = await request(client, rider, quote_id=good, to=2030)
    assert held["fare"]["quoted"] == {"amount": 1150, "currency": "EUR"}
    assert held["fare"]["surge"] == 1.0 and held["fare"]["final"] is None


# -- the ride: held and final fares, ETAs, arrival ---------------------------------------------


async def accepted(
    client: httpx.AsyncClient, *, quoted: bool = True, driver_at: float = 300
) -> tuple[Account, Account, dict[str, Any]]:
    """A rider's trip from north(0) to north(2000) (quoted: the router's 5 km, 1150),
    accepted by a driver `driver_at` metres north."""
    rider, driver = await account(client), await online(client, driver_at)
    quote_id = (await quote(client, rider))["id"] if quoted else None
    ride = await request(client, rider, quote_id=quote_id)
    await ok(client, ACCEPT_TRIP, {"id": ride["id"]}, driver)
    return rider, driver, ride


async def drive(
    client: httpx.AsyncClient, driver: Account, trip_id: str, path: list[float]
) -> dict[str, Any]:
    """Picked up at north(0), driven along `path`, completed: the completed trip."""
    await move(client, driver, 0)
    await step(client, driver, trip_id, "IN_PROGRESS")
    for meters in path:
        await move(client, driver, meters)
    return dict(await step(client, driver, trip_id, "COMPLETED"))


async def test_the_quoted_price_holds_within_a_quarter_more(client: httpx.AsyncClient) -> None:
    rider, driver, ride = await accepted(client)
    # The router said 5 km: 6.2 km driven is within 25 % more.
    done = await drive(client, driver, ride["id"], [2000, 4000, 6200])
    fare = done["fare"]
    assert fare["quoted"] == fare["final"] == {"amount": 1150, "currency": "EUR"}
    assert fare["distanceMeters"] == 6200
    assert fare["durationSeconds"] is not None and fare["durationSeconds"] >= 0
    assert (await trip(client, rider, ride["id"]))["fare"] == fare


async def test_a_long_detour_pays_the_tariff_over_what_was_driven(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    _, driver, ride = await accepted(client)
    done = await drive(client, driver, ride["id"], [2000, 1000, 4300])  # 6.3 km: > 6.25
    fare, tariff = done["fare"], Tariff.of(settings)
    assert fare["distanceMeters"] == 6300
    want = tariff.price(meters=6300, seconds=fare["durationSeconds"], surge=fare["surge"])
    assert fare["final"] == {"amount": want, "currency": "EUR"} and want != 1150
    # Without a quote: always the tariff over what was driven.
    _, driver, ride = await accepted(client, quoted=False)
    fare = (await drive(client, driver, ride["id"], [1000]))["fare"]
    assert fare["quoted"] is None and fare["distanceMeters"] == 1000
    want = tariff.price(meters=1000, seconds=fare["durationSeconds"], surge=fare["surge"])
    assert fare["final"]["amount"] == want == 700  # the minimum


async def test_etas_on_trips_frames_and_cars(server: LiveServer, settings: Settings) -> None:
    eta = Estimator.of(settings)
    async with server.http() as client:
        rider = await account(client)
        cars = (await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"]
        assert cars == []
        rider, driver, ride = await accepted(client, driver_at=800)
        assert (await trip(client, rider, ride["id"]))["pickUpEtaSeconds"] is None  # no fix yet
        async with session(server.ws_url, rider.access) as ws:
            await ws.subscribe("loc", FOLLOW, {"tripId": ride["id"]})
            await watching(server.app, events.location_channel(ride["id"]))
            await move(client, driver, 600)
            frame = (await ws.next("loc"))["driverLocation"]
            assert frame["etaSeconds"] == eta.seconds(600 * 1.3) == 112
            seen = await trip(client, rider, ride["id"])
            assert (seen["pickUpEtaSeconds"], seen["dropOffEtaSeconds"]) == (112, None)
            await move(client, driver, 0)
            await step(client, driver, ride["id"], "IN_PROGRESS")
            await move(client, driver, 500)
            frames = [(await ws.next("loc"))["driverLocation"] for _ in range(2)]
            assert frames[-1]["etaSeconds"] == eta.seconds(1500 * 1.3) == 281
            seen = await trip(client, rider, ride["id"])
            assert (seen["pickUpEtaSeconds"], seen["dropOffEtaSeconds"]) == (None, 281)
        await online(client, 900)
        # nearbyCars shows cars rounded (~100 m): the ETA is from where it shows the car.
        (car,) = (await ok(client, NEARBY, {"near": north(0)}, rider))["nearbyCars"]
        assert car["distanceMeters"] == pytest.approx(900, abs=100)
        assert car["etaSeconds"] == eta.seconds(car["distanceMeters"] * 1.3)


async def test_arrival_is_recorded_and_published_once(server: LiveServer) -> None:
    async with server.http() as client:
        rider, driver, ride = await accepted(client)
        async with session(server.ws_url, rider.access) as ws:
            await ws.subscribe("trip", WATCH, {"id": ride["id"]})
            first = (await ws.next("trip"))["tripUpdated"]
            assert first["arrivedAt"] is None
            await move(client, driver, 120)  # not there yet
            await move(client, driver, 40)  # within ARRIVAL_METERS (50)
            here = (await ws.next("trip"))["tripUpdated"]
            assert here["arrivedAt"] is not None and here["status"] == "STARTED"
            assert here["pickUpEtaSeconds"] is None
            for meters in (30, 10, 45):  # still there: nothing more to say
                await move(client, driver, meters)
            await step(client, driver, ride["id"], "IN_PROGRESS")
            after = (await ws.next("trip"))["tripUpdated"]
            assert (after["status"], after["arrivedAt"]) == ("IN_PROGRESS", here["arrivedAt"])


# -- releaseTrip, no-shows -----------------------------------------------------------------------


async def offered_to(app: Any, trip_id: str) -> dict[int, int]:
    """driver -> wave of the trip's offer rows (wave -1: gave it back)."""
    async with app.state.services.db() as s:
        rows = await s.execute(
            select(col(TripOffer.driver_id), col(TripOffer.wave)).where(
                col(TripOffer.trip_id) == uuid.UUID(trip_id)
            )
        )
        return {driver: wave for driver, wave in rows}


@pytest.mark.parametrize("overrides", [{"dispatch_batch_size": 1, "dispatch_wave_seconds": 30}])
async def test_release_offers_the_trip_to_others_never_back(server: LiveServer) -> None:
    app = server.app
    async with server.http() as client:
        rider, first, ride = await accepted(client, driver_at=100)
        second = await online(client, 500)
        assert await offered_to(app, ride["id"]) == {int(first.id): 0}
        async with (
            session(server.ws_url, second.access) as offers,
            session(server.ws_url, rider.access) as watch,
        ):
            await offers.subscribe("offers", OFFERS)
            await watch.subscribe("trip", WATCH, {"id": ride["id"]})
            assert (await watch.next("trip"))["tripUpdated"]["status"] == "STARTED"
            await watching(app, events.driver_channel(int(second.id)))
            started = time.perf_counter()
            back = (await ok(client, RELEASE, {"id": ride["id"]}, first))["releaseTrip"]
            answered = time.perf_counter() - started
            offer = (await offers.next("offers"))["tripRequested"]
            latency = time.perf_counter() - started
            assert (back["status"], back["driver"], back["arrivedAt"]) == ("REQUESTED", None, None)
            assert offer["id"] == ride["id"] and offer["status"] == "REQUESTED"
            live = (await watch.next("trip"))["tripUpdated"]
            assert (live["status"], live["driver"]) == ("REQUESTED", None)
        print(
            f"re-dispatch: releaseTrip answered in {answered * 1000:.1f} ms, "
            f"the other driver's offer after {latency * 1000:.1f} ms"
        )
        assert (await ok(client, STATE, {}, first))["driverState"]["availability"] == "AVAILABLE"
        # The releasing driver: no longer offered, cannot see or take it.
        assert await offered_to(app, ride["id"]) == {int(first.id): -1, int(second.id): 0}
        body = await gql(client, ACCEPT_TRIP, {"id": ride["id"]}, token=first.access)
        assert error_code(body) == "NOT_FOUND"
        trips = await ok(client, "{ trips { totalCount } }", {}, first)
        assert trips["trips"]["totalCount"] == 0
        # The second driver takes it and gives it back too: nobody is left to offer it to.
        await ok(client, ACCEPT_TRIP, {"id": ride["id"]}, second)
        await ok(client, RELEASE, {"id": ride["id"]}, second)
        assert await offered_to(app, ride["id"]) == {int(first.id): -1, int(second.id): -1}
        # A trip without a pick-up (every driver's) goes back to the pool, for everyone but
        # the driver who gave it back: live too (a later request is the next they hear of).
        plain = await request(client, await account(client), dispatched=False)
        await ok(client, ACCEPT_TRIP, {"id": plain["id"]}, first)
        async with (
            session(server.ws_url, first.access) as mine,
            session(server.ws_url, second.access) as theirs,
        ):
            for ws in (mine, theirs):
                await ws.subscribe("pool", OFFERS)
            await watching(app, events.POOL, count=2)
            await ok(client, RELEASE, {"id": plain["id"]}, first)
            marker = await request(client, await account(client), dispatched=False)
            assert (await theirs.next("pool"))["tripRequested"]["id"] == plain["id"]
            assert (await theirs.next("pool"))["tripRequested"]["id"] == marker["id"]
            assert (await mine.next("pool"))["tripRequested"]["id"] == marker["id"]
        body = await gql(client, ACCEPT_TRIP, {"id": plain["id"]}, token=first.access)
        assert error_code(body) == "NOT_FOUND"
        await ok(client, ACCEPT_TRIP, {"id": plain["id"]}, second)


async def test_who_may_release_and_when(client: httpx.AsyncClient) -> None:
    rider, driver, ride = await accepted(client)
    other = await online(client, 5000)
    cases = [(rider, "FORBIDDEN"), (other, "NOT_FOUND")]
    for who, code in cases:
        body = await gql(client, RELEASE, {"id": ride["id"]}, token=who.access)
        assert error_code(body) == code, body
    body = await gql(client, RELEASE, {"id": "not-a-trip"}, token=driver.access)
    assert error_code(body) == "NOT_FOUND"
    await step(client, driver, ride["id"], "IN_PROGRESS")
    body = await gql(client, RELEASE, {"id": ride["id"]}, token=driver.access)
    assert error_code(body) == "CONFLICT"


@pytest.mark.parametrize("overrides", [{"no_show_seconds": 3}])
async def test_no_show_after_waiting_at_the_pick_up(client: httpx.AsyncClient) -> None:
    rider, driver, ride = await accepted(client)
    no_show = {"id": ride["id"], "noShow": True}
    # Not arrived: CONFLICT.
    assert error_code(await gql(client, RELEASE, no_show, token=driver.access)) == "CONFLICT"
    await move(client, driver, 20)
    here = await eventually(
        lambda: trip(client, rider, ride["id"]), lambda t: t["arrivedAt"] is not None
    )
    # Arrived, but not waited NO_SHOW_SECONDS yet: CONFLICT, and nothing changed.
    assert error_code(await gql(client, RELEASE, no_show, token=driver.access)) == "CONFLICT"
    assert (await trip(client, rider, ride["id"]))["status"] == "STARTED"

    async def report_no_show() -> dict[str, Any]:
        return await gql(client, RELEASE, no_show, token=driver.access)

    body = await eventually(report_no_show, lambda b: "errors" not in b)
    done = body["data"]["releaseTrip"]
    waited = datetime.fromisoformat(done["updated"]) - datetime.fromisoformat(here["arrivedAt"])
    assert waited >= timedelta(seconds=3)
    assert (done["status"], done["cancelReason"]) == ("CANCELED", "RIDER_NO_SHOW")
    assert done["fare"]["final"] == {"amount": 500, "currency": "EUR"}
    assert (await ok(client, STATE, {}, driver))["driverState"]["availability"] == "AVAILABLE"


# -- expiry, cancel reasons, deactivation -------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"dispatch_timeout_seconds": 1}])
async def test_requests_nobody_takes_expire(server: LiveServer) -> None:
    async with server.http() as client:
        rider, plain_rider = await account(client), await account(client)
        async with session(server.ws_url, rider.access) as ws:
            ride = await request(client, rider)
            await ws.subscribe("trip", WATCH, {"id": ride["id"]})
            plain = await request(client, plain_rider, dispatched=False)

            def ended(data: dict[str, Any]) -> bool:
                return bool(data["tripUpdated"]["status"] == "CANCELED")

            gone = (await ws.until("trip", ended))["tripUpdated"]
        assert gone["cancelReason"] == "NO_DRIVER_FOUND"
        waited = datetime.fromisoformat(gone["updated"]) - datetime.fromisoformat(gone["created"])
        assert waited >= timedelta(seconds=1)
        seen = await eventually(
            lambda: trip(client, plain_rider, plain["id"]), lambda t: t["status"] == "CANCELED"
        )
        assert seen["cancelReason"] == "NO_DRIVER_FOUND"


async def test_requests_from_before_expiry_expire(backend: Backend, tmp_path: Path) -> None:
    """Requests made before 0004 had no expiry (a pool request no schedule row, a
    dispatched one a row without `expires_at`): after the upgrade each expires
    DISPATCH_TIMEOUT_SECONDS after it was made, as a new one would."""
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    trips = sa.table(
        "trip",
        *(sa.column(n) for n in ("pick_up_address", "drop_off_address", "status", "rider_id")),
        *(sa.column(n) for n in ("pick_up_latitude", "pick_up_longitude")),
        sa.column("id", sa.Uuid()),
        sa.column("created", UTCDateTime()),
        sa.column("updated", UTCDateTime()),
    )
    waves = sa.table(
        "dispatch_wave",
        sa.column("trip_id", sa.Uuid()),
        sa.column("wave"),
        sa.column("due_at", UTCDateTime()),
    )
    old_pool, old_dispatched, recent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with empty_database(backend, tmp_path) as url:
        settings = base_settings(
            database_url=url,
            redis_url=backend.redis_url,
            channel_prefix=sub_prefix("old-requests"),
            dispatch_timeout_seconds=600,
        )
        engine = create_async_engine(url)
        try:
            await asyncio.to_thread(upgrade, settings, "0003")
            async with engine.begin() as conn:
                riders = []
                for name in ("old-pool", "old-dispatched", "recent"):
                    inserted = await conn.execute(
                        sa.text(
                            'INSERT INTO "user" (username, username_key, first_name, '
                            'last_name, "group", password, is_active, is_staff, date_joined) '
                            "VALUES (:n, :n, 'a', 'b', 'rider', 'x', true, false, "
                            "CURRENT_TIMESTAMP) RETURNING id"
                        ),
                        {"n": name},
                    )
                    riders.append(inserted.scalar_one())
                made = {old_pool: hour_ago, old_dispatched: hour_ago, recent: datetime.now(UTC)}
                for (trip_id, when), rider in zip(made.items(), riders, strict=True):
                    where = (0.0, 0.0) if trip_id == old_dispatched else (None, None)
                    await conn.execute(
                        trips.insert().values(
                            id=trip_id,
                            created=when,
                            updated=when,
                            pick_up_address="A",
                            drop_off_address="B",
                            status="REQUESTED",
                            rider_id=rider,
                            pick_up_latitude=where[0],
                            pick_up_longitude=where[1],
                        )
                    )
                # 0003's schedule: the dispatched request's next wave, never its end.
                await conn.execute(
                    waves.insert().values(trip_id=old_dispatched, wave=3, due_at=hour_ago)
                )
            await asyncio.to_thread(upgrade, settings)

            async def rows() -> dict[uuid.UUID, Any]:
                async with engine.connect() as conn:
                    found = await conn.execute(
                        sa.select(
                            col(Trip.id),
                            col(Trip.status),
                            col(Trip.cancel_reason),
                            col(Trip.ended_at),
                            col(DispatchWave.expires_at),
                        ).outerjoin(DispatchWave, col(DispatchWave.trip_id) == col(Trip.id))
                    )
                    return {row.id: row for row in found}

            app = create_app(settings)
            async with app.router.lifespan_context(app):  # its dispatch worker
                seen = await eventually(
                    rows,
                    lambda r: all(r[t].status is TripStatus.CANCELED for t in made if t != recent),
                )
        finally:
            await engine.dispose()
    for trip_id in (old_pool, old_dispatched):
        assert seen[trip_id].cancel_reason is CancelReason.NO_DRIVER_FOUND
        assert seen[trip_id].ended_at is not None
        assert seen[trip_id].expires_at is None  # its schedule row is gone
    # The recent one waits out its 600 s from when it was made, in its row.
    assert seen[recent].status is TripStatus.REQUESTED
    assert seen[recent].expires_at == made[recent] + timedelta(seconds=600)


async def test_a_riders_cancel_says_so(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    ride = await request(client, rider)
    canceled = await ok(client, CANCEL_TRIP, {"id": ride["id"]}, rider)
    assert canceled["cancelTrip"]["status"] == "CANCELED"
    assert (await trip(client, rider, ride["id"]))["cancelReason"] == "RIDER_CANCELED"


async def test_deactivation_ends_or_releases_open_trips(server: LiveServer) -> None:
    services = server.app.state.services

    async def deactivate(who: Account, *, delete: bool = False) -> None:
        end = deactivation.delete_user if delete else deactivation.deactivate_user
        assert await end(
            db=services.db,
            events=services.events,
            positions=services.positions,
            settings=services.settings,
            user_id=int(who.id),
        )

    async with server.http() as client:
        # A rider's request: CANCELED.
        leaving = await account(client)
        requested = await request(client, leaving)
        # A driver's STARTED trip: given back, REQUESTED again; the rider sees it live.
        rider, driver, started = await accepted(client)
        # A driver's IN_PROGRESS trip (driver deleted): CANCELED.
        rider3, driver3, rolling = await accepted(client, driver_at=400)
        await step(client, driver3, rolling["id"], "IN_PROGRESS")
        async with session(server.ws_url, rider.access) as ws:
            await ws.subscribe("trip", WATCH, {"id": started["id"]})
            assert (await ws.next("trip"))["tripUpdated"]["status"] == "STARTED"
            await deactivate(driver)
            live = (await ws.next("trip"))["tripUpdated"]
            assert (live["status"], live["driver"], live["cancelReason"]) == (
                "REQUESTED",
                None,
                None,
            )
        await deactivate(leaving)
        await deactivate(driver3, delete=True)
        rows = {}
        async with services.db() as s:
            for trip_id in (requested["id"], started["id"], rolling["id"]):
                row = await s.get(Trip, uuid.UUID(trip_id))
                assert row is not None
                rows[trip_id] = (row.status.value, row.cancel_reason and row.cancel_reason.value)
        assert rows == {
            requested["id"]: ("CANCELED", "ACCOUNT_DEACTIVATED"),
            started["id"]: ("REQUESTED", None),
            rolling["id"]: ("CANCELED", "ACCOUNT_DEACTIVATED"),
        }
        seen = await trip(client, rider3, rolling["id"])
        assert (seen["status"], seen["driver"]) == ("CANCELED", None)


# -- earnings ------------------------------------------------------------------------------------


async def test_earnings_of_completed_trips(client: httpx.AsyncClient) -> None:
    rider, driver, ride = await accepted(client)
    first = await drive(client, driver, ride["id"], [2000])
    second_rider = await account(client)
    await move(client, driver, 100)  # back near the pick-up: in the first wave again
    second = await request(client, second_rider, quote_id=(await quote(client, second_rider))["id"])
    await ok(client, ACCEPT_TRIP, {"id": second["id"]}, driver)
    second = await drive(client, driver, second["id"], [2500])
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()}
    got = (await ok(client, EARNINGS, window, driver))["earnings"]
    total = first["fare"]["final"]["amount"] + second["fare"]["final"]["amount"]
    assert got == {
        "trips": 2,
        "total": {"amount": total, "currency": "EUR"},
        "distanceMeters": 4500,
    }
    later = {"from": now.isoformat(), "to": (now + timedelta(days=1)).isoformat()}
    assert (await ok(client, EARNINGS, later, driver))["earnings"]["trips"] == 0
    assert error_code(await gql(client, EARNINGS, window, token=rider.access)) == "FORBIDDEN"
    too_long = {"from": (now - timedelta(days=367)).isoformat(), "to": now.isoformat()}
    body = await gql(client, EARNINGS, too_long, token=driver.access)
    assert error_code(body) == "BAD_USER_INPUT"


async def test_jumping_positions_cannot_overflow_the_fare(client: httpx.AsyncClient) -> None:
    """A client reporting a car that jumps across the globe adds ~20,000 km a report: the
    driven distance and the fare stay 32-bit integers, and completing still works."""
    _, driver, ride = await accepted(client, quoted=False)
    await move(client, driver, 0)
    await step(client, driver, ride["id"], "IN_PROGRESS")
    for i in range(110):  # 110 x ~20,000 km > 2**31 m
        far = (
            {"latitude": 80.0, "longitude": 0.0}
            if i % 2
            else {"latitude": -80.0, "longitude": 180.0}
        )
        await ok(client, UPDATE, {"p": far}, driver)
    fare = (await step(client, driver, ride["id"], "COMPLETED"))["fare"]
    assert fare["distanceMeters"] == MAX_METERS
    assert 0 < fare["final"]["amount"] <= MAX_AMOUNT
