"""Issue 19's dispatch findings that one process shows, on both backends: nearbyCars is
anonymous (7), a cursor the server did not write is BAD_USER_INPUT (10), a deactivated
driver leaves dispatch at once (11), and requestTrip is limited per rider (14). The
races (3, 12) are in tests/test_dispatch_races.py."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from taxi.core.config import Settings
from taxi.domain.models import TripOffer, User
from taxi.domain.positions import METERS_PER_DEGREE, PositionStore, distance
from taxi.domain.services import deactivation
from tests.backends import base_settings, sub_prefix
from tests.helpers import CANCEL_TRIP, Account, account, error_code, gql, ok
from tests.wait import WAIT

BASE = (52.52, 13.40)
GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
NEARBY = """query Near($near: PointInput!) { nearbyCars(near: $near, radiusMeters: 5000) {
  distanceMeters location { latitude longitude heading recordedAt } } }"""
REQUEST = """mutation R($input: RequestTripInput!) { requestTrip(input: $input) { id } }"""
TRIPS = "query T($after: String) { trips(first: 5, after: $after) { totalCount } }"
TRIP_LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Its own key prefix (positions and limits are shared Redis state; user ids restart
    in every test), and a low trip-request limit."""
    return base_settings(
        **{
            **settings.model_dump(include={"database_url", "redis_url", "media_root"}),
            "channel_prefix": sub_prefix("dispatch-hard"),
            "trip_requests_per_10_min": TRIP_LIMIT,
        }
    )


def at(north: float, east: float = 0.0) -> dict[str, float]:
    """A point `north` and `east` metres from BASE."""
    east_degree = METERS_PER_DEGREE * math.cos(math.radians(BASE[0]))
    return {
        "latitude": BASE[0] + north / METERS_PER_DEGREE,
        "longitude": BASE[1] + east / east_degree,
    }


async def online(client: httpx.AsyncClient, point: dict[str, float]) -> Account:
    driver = await account(client, "DRIVER")
    assert (await ok(client, GO_ONLINE, {"p": point}, driver))["goOnline"] == {
        "availability": "AVAILABLE"
    }
    return driver


async def request(client: httpx.AsyncClient, rider: Account) -> dict[str, Any]:
    where = {"pickUpAddress": "A", "dropOffAddress": "B", "pickUp": at(0)}
    return await gql(client, REQUEST, {"input": where}, token=rider.access)


async def offered(app: Any, trip_id: str) -> set[int]:
    async with app.state.services.db() as s:
        rows = await s.scalars(
            select(col(TripOffer.driver_id)).where(col(TripOffer.trip_id) == uuid.UUID(trip_id))
        )
        return set(rows)


# -- 7: nearbyCars is anonymous -----------------------------------------------------------------


async def test_nearby_cars_cannot_be_followed(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    exact = {**at(1234.5, 987.6), "heading": 123.4}
    await online(client, exact)
    (car,) = (await ok(client, NEARBY, {"near": at(0)}, rider))["nearbyCars"]
    location = car["location"]
    # ~100 m: three decimals, no heading, the report's minute.
    assert location["latitude"] == round(exact["latitude"], 3) != exact["latitude"]
    assert location["longitude"] == round(exact["longitude"], 3) != exact["longitude"]
    assert location["heading"] is None
    recorded = datetime.fromisoformat(location["recordedAt"])
    assert (recorded.second, recorded.microsecond) == (0, 0)
    # The distance gives the exact point away no better than the coordinates do.
    rounded = distance(*BASE, location["latitude"], location["longitude"])
    assert car["distanceMeters"] == pytest.approx(rounded, abs=0.01)
    assert car["distanceMeters"] != pytest.approx(
        distance(*BASE, exact["latitude"], exact["longitude"]), abs=1
    )


# -- 10: cursors the server did not write -------------------------------------------------------


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00|{id}",  # before year 1 in UTC: the database overflowed
        "9999-12-31T23:59:59-14:00|{id}",  # after year 9999 in UTC
        "2026-01-01T10:00:00+02:00|{id}",  # a time the server never writes (not UTC)
        "2026-01-01 08:00:00+00:00|{id}",  # nor in this form
        "2026-01-01T08:00:00|{id}",  # naive
        "2026-01-01T08:00:00+00:00|{ID}",  # an id written differently
        "offset=20",  # another API's cursor
    ],
)
async def test_foreign_or_forged_cursor_is_bad_input(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    rider = await account(client)
    trip_id = uuid.uuid4()
    after = cursor(text.format(id=trip_id, ID=str(trip_id).upper()))
    with caplog.at_level(logging.WARNING):
        body = await gql(client, TRIPS, {"after": after}, token=rider.access)
    assert error_code(body) == "BAD_USER_INPUT", body
    assert body["errors"][0]["extensions"]["fields"] == {"after": ["Invalid cursor."]}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # What the server writes still works, also at the ends of the range.
    for edge in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"):
        body = await gql(client, TRIPS, {"after": cursor(f"{edge}|{trip_id}")}, token=rider.access)
        assert body == {"data": {"trips": {"totalCount": 0}}}, body


# -- 11: a deactivated driver leaves dispatch at once --------------------------------------------


async def test_deactivated_driver_gets_no_offer_nor_nearby_entry(
    client: httpx.AsyncClient, app: Any
) -> None:
    services = app.state.services
    rider = await account(client)
    gone, kept = await online(client, at(100)), await online(client, at(200))
    assert len((await ok(client, NEARBY, {"near": at(0)}, rider))["nearbyCars"]) == 2
    assert await deactivation.deactivate_user(
        db=services.db,
        events=services.events,
        positions=services.positions,
        settings=services.settings,
        user_id=int(gone.id),
    )
    cars = (await ok(client, NEARBY, {"near": at(0)}, rider))["nearbyCars"]
    assert [round(c["distanceMeters"], -2) for c in cars] == [200]
    trip = (await request(client, rider))["data"]["requestTrip"]
    assert await offered(app, trip["id"]) == {int(kept.id)}


async def test_offers_skip_an_inactive_driver_the_store_still_lists(
    client: httpx.AsyncClient, app: Any
) -> None:
    """The rows decide, not the store: a deactivation whose store change was lost (or a
    goOnline in flight as it happened) still offers nothing to that driver; the next
    nearest one gets the offer instead."""
    rider = await account(client)
    drivers = [await online(client, at(m)) for m in (100, 200, 300)]
    async with app.state.services.db() as s, s.begin():
        await s.execute(
            update(User).where(col(User.id) == int(drivers[0].id)).values(is_active=False)
        )
    trip = (await request(client, rider))["data"]["requestTrip"]
    # The settings' batch is 10: both active drivers, not the inactive nearest one.
    assert await offered(app, trip["id"]) == {int(drivers[1].id), int(drivers[2].id)}


# -- 14: trip requests per rider --------------------------------------------------------------


async def test_trip_requests_are_limited_per_rider(client: httpx.AsyncClient, app: Any) -> None:
    rider, other = await account(client), await account(client)
    await online(client, at(100))
    for _ in range(TRIP_LIMIT):
        trip = (await request(client, rider))["data"]["requestTrip"]
        await ok(client, CANCEL_TRIP, {"id": trip["id"]}, rider)
    body = await request(client, rider)
    assert error_code(body) == "RATE_LIMITED", body
    assert body["data"] is None
    async with app.state.services.db() as s:
        assert (await ok(client, TRIPS, {}, rider))["trips"]["totalCount"] == TRIP_LIMIT
        assert len((await s.scalars(select(TripOffer))).all()) == TRIP_LIMIT
    # Another rider is not affected.
    assert "errors" not in await request(client, other)


# -- 3, 12 in one process (both backends; across processes: tests/test_dispatch_races.py) ---

GO_OFFLINE = "mutation { goOffline { availability } }"
STATE = "{ driverState { availability } }"
ACCEPT = "mutation A($id: ID!) { acceptTrip(id: $id) { status } }"
ONE_PROCESS_TRIALS = 50
STEP = 8


async def availability(client: httpx.AsyncClient, driver: Account) -> str:
    state: str = (await ok(client, STATE, {}, driver))["driverState"]["availability"]
    return state


async def test_accept_cancel_and_go_offline_interleaved(client: httpx.AsyncClient) -> None:
    """Each trial starts the accept, the cancel and goOffline together, letting the event
    loop run them a different number of steps apart; whatever the order, the driver is
    ON_TRIP exactly while the trip is STARTED, and never both OFFLINE and accepted. Which
    orders these trials produce depends on the machine's load, so the guarantee is
    asserted per trial, and the orders that broke it are forced in the next test."""
    driver = await online(client, at(50))
    riders = [await account(client) for _ in range(-(-ONE_PROCESS_TRIALS // TRIP_LIMIT))]
    for i in range(ONE_PROCESS_TRIALS):
        rider = riders[i // TRIP_LIMIT]  # each within the module's request limit
        trip = (await request(client, rider))["data"]["requestTrip"]

        async def after(steps: int, query: str, who: Account, variables: Any) -> Any:
            for _ in range(steps):
                await asyncio.sleep(0)  # a loop step: varies the interleaving
            return await gql(client, query, variables, token=who.access)

        # Offsets in units of STEP loop steps: wide enough to span the requests' own
        # paths to the database whatever their length (the executor shortened them).
        accepted, canceled, offline = await asyncio.gather(
            after(i % 5 * STEP, ACCEPT, driver, {"id": trip["id"]}),
            after(i // 5 % 5 * STEP, CANCEL_TRIP, rider, {"id": trip["id"]}),
            after(i // 25 * 3 * STEP, GO_OFFLINE, driver, {}),
        )
        await agree(client, driver, rider, trip["id"], outcome(accepted, canceled, offline))


def outcome(*bodies: dict[str, Any] | None) -> tuple[str, ...]:
    """Each body as "ok", its error's code, or "-" when it was not sent."""
    return tuple("-" if b is None else "ok" if "errors" not in b else error_code(b) for b in bodies)


async def agree(
    client: httpx.AsyncClient, driver: Account, rider: Account, trip_id: str, results: Any
) -> None:
    """The guarantee after one trial of (accept, cancel, goOffline) `results`; leaves
    the driver AVAILABLE and the trip ended for the next trial."""
    went_offline = results[2] == "ok"
    # Never both: an accept after going offline is CONFLICT.
    assert not (went_offline and results[0] == "ok" and results[1] != "ok"), results
    if results[1] != "ok":  # the cancel lost to the accept: the trip is under way
        assert results == ("ok", "CONFLICT", "CONFLICT"), results
        assert await availability(client, driver) == "ON_TRIP"
        await ok(client, CANCEL_TRIP, {"id": trip_id}, rider)
    expected = "OFFLINE" if went_offline else "AVAILABLE"
    assert await availability(client, driver) == expected, results
    if went_offline:
        await ok(client, GO_ONLINE, {"p": at(50)}, driver)


class HeldStart:
    """The app's own position store, except that once `hold()` is called the next
    `start_trip` (the accept's store change, made after its commit) waits until
    `release()`: the test decides what runs between the commit and that change."""

    def __init__(self, store: PositionStore) -> None:
        self.store = store
        self.armed = False
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def hold(self) -> None:
        self.armed = True
        self.reached.clear()
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    async def start_trip(self, **change: Any) -> bool:
        if self.armed:  # only the first one: goOffline's own repair must pass
            self.armed = False
            self.reached.set()
            await self.released.wait()
        return await self.store.start_trip(**change)


# Each order the race allows, forced: (name, what runs first, what runs after the
# accept's commit but before its store change, what runs last), and the outcome of
# (accept, cancel, goOffline) ("-": not sent). The old code (before availability.py) broke three: an
# accept after goOffline succeeded (OFFLINE and driving), a cancel in the accept's window
# left the driver ON_TRIP with no trip, and goOffline in that window succeeded.
ORDERS: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ("accept, cancel, offline", (), (), ("cancel", "offline"), ("ok", "ok", "ok")),
    ("accept, offline, cancel", (), (), ("offline", "cancel"), ("ok", "ok", "CONFLICT")),
    ("cancel first", ("cancel",), (), ("offline",), ("CONFLICT", "ok", "ok")),
    ("offline first", ("offline",), (), ("cancel",), ("CONFLICT", "ok", "ok")),
    ("cancel in the window", (), ("cancel",), (), ("ok", "ok", "-")),
    ("cancel in the window, offline", (), ("cancel",), ("offline",), ("ok", "ok", "ok")),
    ("offline in the window", (), ("offline",), ("cancel",), ("ok", "ok", "CONFLICT")),
    ("both in the window", (), ("offline", "cancel"), (), ("ok", "ok", "CONFLICT")),
    ("cancel, offline in it", (), ("cancel", "offline"), (), ("ok", "ok", "ok")),
]


@pytest.mark.parametrize("order", ORDERS, ids=[o[0] for o in ORDERS])
async def test_each_order_of_accept_cancel_and_go_offline(
    client: httpx.AsyncClient, app: Any, order: Any
) -> None:
    """Each order forced by holding the accept's store change, whatever the load."""
    _, before, window, last, expected = order
    store = HeldStart(app.state.services.positions)
    app.state.services.positions = store
    driver, rider = await online(client, at(50)), await account(client)
    trip_id = (await request(client, rider))["data"]["requestTrip"]["id"]
    bodies: dict[str, Any] = {}

    async def run(step: str) -> None:
        query, who, variables = {
            "cancel": (CANCEL_TRIP, rider, {"id": trip_id}),
            "offline": (GO_OFFLINE, driver, {}),
        }[step]
        bodies[step] = await gql(client, query, variables, token=who.access)

    for step in before:
        await run(step)
    store.hold()
    accept = asyncio.ensure_future(gql(client, ACCEPT, {"id": trip_id}, token=driver.access))
    # The accept committed (its store change is held), or was refused (never held).
    reached = asyncio.ensure_future(store.reached.wait())
    await asyncio.wait([accept, reached], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    assert store.reached.is_set() or accept.done(), "the accept neither committed nor answered"
    assert store.reached.is_set() != bool(before), (order, accept.done() and accept.result())
    for step in window:
        await run(step)
    store.release()
    accepted = await accept
    for step in last:
        await run(step)
    results = outcome(accepted, bodies.get("cancel"), bodies.get("offline"))
    assert results == expected, results
    await agree(client, driver, rider, trip_id, results)
