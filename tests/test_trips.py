"""The ride lifecycle through the ASGI app, on both backends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from taxi.core.config import Settings
from taxi.domain.models import Trip, TripStatus
from taxi.main import create_app
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    RATE_TRIP,
    REPORT_LOCATION,
    REQUEST_TRIP,
    TRIP,
    UPDATE_STATUS,
    Account,
    account,
    error_code,
    gql,
    request_trip,
)

TRIPS = """
query Trips($status: [TripStatus!], $first: Int, $after: String) {
  trips(status: $status, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id status rider { id username } driver { id username rating } } }
  }
}"""


async def insert_trip(
    app: Any,
    *,
    rider: Account,
    status: TripStatus = TripStatus.REQUESTED,
    driver: Account | None = None,
    created: datetime | None = None,
    rating: int | None = None,
) -> str:
    """A real row, written directly: faster than walking the lifecycle for fixtures."""
    now = created or datetime.now(UTC)
    trip = Trip(
        pick_up_address="1 Main St",
        drop_off_address="2 Side St",
        status=status,
        rider_id=int(rider.id),
        driver_id=int(driver.id) if driver else None,
        created=now,
        updated=now,
        rating=rating,
    )
    async with app.state.services.db() as session, session.begin():
        session.add(trip)
    return str(trip.id)


async def stored(app: Any, trip_id: str) -> Trip:
    async with app.state.services.db() as session:
        trip: Trip | None = await session.get(Trip, uuid.UUID(trip_id))
    assert trip is not None
    return trip


# -- the seed system's behaviours ------------------------------------------------------


async def test_rider_lists_only_their_own_trips(client: httpx.AsyncClient, app: Any) -> None:
    rider, other = await account(client), await account(client)
    mine = [
        await insert_trip(app, rider=rider, status=TripStatus.COMPLETED),
        await insert_trip(app, rider=rider, status=TripStatus.CANCELED),
    ]
    await insert_trip(app, rider=other)
    body = await gql(client, TRIPS, token=rider.access)
    trips = body["data"]["trips"]
    assert trips["totalCount"] == 2
    assert sorted(e["node"]["id"] for e in trips["edges"]) == sorted(mine)
    assert {e["node"]["rider"]["id"] for e in trips["edges"]} == {rider.id}


async def test_trip_by_id(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    trip = await request_trip(client, rider)
    body = await gql(client, TRIP, {"id": trip["id"]}, token=rider.access)
    assert body["data"]["trip"] == trip
    assert trip["status"] == "REQUESTED" and trip["rider"]["id"] == rider.id
    assert trip["driver"] is None and trip["driverLocation"] is None
    created = datetime.fromisoformat(trip["created"])
    assert created.utcoffset() == timedelta(0)


async def test_driver_sees_requested_trips_and_their_own(
    client: httpx.AsyncClient, app: Any
) -> None:
    r1, r2, r3 = [await account(client) for _ in range(3)]
    driver, other_driver = await account(client, "DRIVER"), await account(client, "DRIVER")
    requested = [await insert_trip(app, rider=r1), await insert_trip(app, rider=r2)]
    driving = await insert_trip(app, rider=r3, status=TripStatus.STARTED, driver=driver)
    await insert_trip(app, rider=r3, status=TripStatus.COMPLETED, driver=other_driver)
    body = await gql(client, TRIPS, token=driver.access)
    ids = {e["node"]["id"] for e in body["data"]["trips"]["edges"]}
    assert ids == {*requested, driving}
    assert body["data"]["trips"]["totalCount"] == 3
    only = await gql(client, TRIPS, {"status": ["STARTED"]}, token=driver.access)
    assert [e["node"]["id"] for e in only["data"]["trips"]["edges"]] == [driving]


async def test_rider_cannot_see_another_riders_trip(client: httpx.AsyncClient) -> None:
    owner, stranger = await account(client), await account(client)
    trip = await request_trip(client, owner)
    body = await gql(client, TRIP, {"id": trip["id"]}, token=stranger.access)
    assert body["data"] == {"trip": None}
    assert error_code(body) == "NOT_FOUND"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1", str(uuid.uuid4()), "' OR 1=1 --"])
async def test_unknown_or_malformed_trip_id_is_not_found(
    client: httpx.AsyncClient, bad_id: str
) -> None:
    rider = await account(client)
    body = await gql(client, TRIP, {"id": bad_id}, token=rider.access)
    assert error_code(body) == "NOT_FOUND"


async def test_anonymous_gets_unauthenticated(client: httpx.AsyncClient) -> None:
    assert error_code(await gql(client, TRIPS)) == "UNAUTHENTICATED"


# -- every (role, status, mutation) ----------------------------------------------------

OK = "ok"
ROLES = ("owner", "other_rider", "trip_driver", "other_driver")
MUTATIONS = ("accept", "update", "cancel", "report", "rate")
ACTIVE = {TripStatus.STARTED, TripStatus.IN_PROGRESS}


def expected(role: str, status: TripStatus, mutation: str) -> str:
    """The contract's rules, written out independently of the implementation."""
    requested = status is TripStatus.REQUESTED
    if role == "other_rider":
        return "NOT_FOUND"
    if role == "other_driver" and not requested:
        # Every trip was once in the pool that all drivers saw: one that left it is a
        # lost race (CONFLICT) for acceptTrip, and invisible for everything else.
        return "CONFLICT" if mutation == "accept" else "NOT_FOUND"
    if mutation == "accept":
        if role == "owner":
            return "FORBIDDEN"
        return OK if requested else "CONFLICT"
    if mutation == "update":
        if role != "trip_driver":
            return "FORBIDDEN"
        return OK if status in ACTIVE else "CONFLICT"
    if mutation == "cancel":
        if role != "owner":
            return "FORBIDDEN"
        return OK if status in (TripStatus.REQUESTED, TripStatus.STARTED) else "CONFLICT"
    if mutation == "report":
        if role != "trip_driver":
            return "FORBIDDEN"
        return OK if status in ACTIVE else "CONFLICT"
    assert mutation == "rate"
    if role != "owner":
        return "FORBIDDEN"
    return OK if status is TripStatus.COMPLETED else "CONFLICT"


def call(mutation: str, trip_id: str, status: TripStatus) -> tuple[str, dict[str, Any]]:
    if mutation == "accept":
        return ACCEPT_TRIP, {"id": trip_id}
    if mutation == "update":
        nxt = {TripStatus.STARTED: "IN_PROGRESS", TripStatus.IN_PROGRESS: "COMPLETED"}
        return UPDATE_STATUS, {"id": trip_id, "status": nxt.get(status, "IN_PROGRESS")}
    if mutation == "cancel":
        return CANCEL_TRIP, {"id": trip_id}
    if mutation == "report":
        loc = {"latitude": 52.5, "longitude": 13.4, "heading": 90.0}
        return REPORT_LOCATION, {"tripId": trip_id, "location": loc}
    return RATE_TRIP, {"id": trip_id, "rating": 4}


def changed(mutation: str, before: Trip, after: Trip, actor: Account) -> None:
    """The stored row after a successful mutation."""
    if mutation == "accept":
        assert after.status is TripStatus.STARTED and after.driver_id == int(actor.id)
    elif mutation == "update":
        step = {TripStatus.STARTED: TripStatus.IN_PROGRESS}
        assert after.status is step.get(before.status, TripStatus.COMPLETED)
    elif mutation == "cancel":
        assert after.status is TripStatus.CANCELED
    elif mutation == "report":
        # Positions live in the position store: the row is not written (PROTOCOL.md).
        assert after == before
        return
    else:
        assert after.rating == 4
    assert after.updated > before.updated


@pytest.mark.parametrize("status", list(TripStatus), ids=lambda s: s.value)
@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_role_status_mutation_table(
    client: httpx.AsyncClient, app: Any, status: TripStatus, mutation: str
) -> None:
    people = {
        "owner": await account(client),
        "other_rider": await account(client),
        "trip_driver": await account(client, "DRIVER"),
        "other_driver": await account(client, "DRIVER"),
    }
    for role in ROLES:
        if role == "trip_driver" and status is TripStatus.REQUESTED:
            continue  # a requested trip has no driver yet; other_driver covers it
        driver = None if status is TripStatus.REQUESTED else people["trip_driver"]
        trip_id = await insert_trip(
            app,
            rider=people["owner"],
            status=status,
            driver=driver,
            created=datetime.now(UTC) - timedelta(minutes=5),
        )
        before = await stored(app, trip_id)
        query, variables = call(mutation, trip_id, status)
        body = await gql(client, query, variables, token=people[role].access)
        want = expected(role, status, mutation)
        after = await stored(app, trip_id)
        case = f"{role} {mutation} {status.value}"
        if want == OK:
            assert "errors" not in body, (case, body)
            changed(mutation, before, after, people[role])
        else:
            assert error_code(body) == want, (case, body)
            assert after == before, case  # nothing stored on a refused change
        # Leave no active trip behind: the next role's fixture needs a free rider.
        async with app.state.services.db() as session, session.begin():
            row = await session.get(Trip, uuid.UUID(trip_id))
            assert row is not None
            row.status = TripStatus.CANCELED


# -- input rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pick_up", "drop_off", "field"),
    [("", "B", "pickUpAddress"), ("A", "  ", "dropOffAddress"), ("x" * 256, "B", "pickUpAddress")],
)
async def test_request_trip_validation(
    client: httpx.AsyncClient, pick_up: str, drop_off: str, field: str
) -> None:
    rider = await account(client)
    body = await gql(
        client,
        REQUEST_TRIP,
        {"input": {"pickUpAddress": pick_up, "dropOffAddress": drop_off}},
        token=rider.access,
    )
    assert error_code(body) == "BAD_USER_INPUT"
    assert list(body["errors"][0]["extensions"]["fields"]) == [field]


async def request_a_to_b(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    where = {"pickUpAddress": "A", "dropOffAddress": "B"}
    return await gql(client, REQUEST_TRIP, {"input": where}, token=who.access)


async def test_one_active_trip_per_rider(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    await request_trip(client, rider)
    assert error_code(await request_a_to_b(client, rider)) == "CONFLICT"


async def test_drivers_cannot_request(client: httpx.AsyncClient) -> None:
    driver = await account(client, "DRIVER")
    assert error_code(await request_a_to_b(client, driver)) == "FORBIDDEN"


async def test_driver_with_a_trip_under_way_cannot_take_another(
    client: httpx.AsyncClient,
) -> None:
    driver = await account(client, "DRIVER")
    first = await request_trip(client, await account(client))
    second = await request_trip(client, await account(client))
    assert "errors" not in await gql(client, ACCEPT_TRIP, {"id": first["id"]}, token=driver.access)
    body = await gql(client, ACCEPT_TRIP, {"id": second["id"]}, token=driver.access)
    assert error_code(body) == "CONFLICT"


@pytest.mark.parametrize(
    ("location", "field"),
    [
        ({"latitude": 91.0, "longitude": 0.0}, "latitude"),
        ({"latitude": 0.0, "longitude": -180.5}, "longitude"),
        ({"latitude": 0.0, "longitude": 0.0, "heading": 360.0}, "heading"),
        ({"latitude": 0.0, "longitude": 0.0, "heading": -1.0}, "heading"),
    ],
)
async def test_report_location_ranges(
    client: httpx.AsyncClient, location: dict[str, float], field: str
) -> None:
    driver = await account(client, "DRIVER")
    trip = await request_trip(client, await account(client))
    await gql(client, ACCEPT_TRIP, {"id": trip["id"]}, token=driver.access)
    body = await gql(
        client, REPORT_LOCATION, {"tripId": trip["id"], "location": location}, token=driver.access
    )
    assert error_code(body) == "BAD_USER_INPUT"
    assert list(body["errors"][0]["extensions"]["fields"]) == [field]


@pytest.mark.parametrize("rating", [0, 6, -3])
async def test_rating_range(client: httpx.AsyncClient, app: Any, rating: int) -> None:
    rider, driver = await account(client), await account(client, "DRIVER")
    trip_id = await insert_trip(app, rider=rider, status=TripStatus.COMPLETED, driver=driver)
    body = await gql(client, RATE_TRIP, {"id": trip_id, "rating": rating}, token=rider.access)
    assert error_code(body) == "BAD_USER_INPUT"
    assert (await stored(app, trip_id)).rating is None


async def test_a_whole_ride_and_the_drivers_rating(client: httpx.AsyncClient, app: Any) -> None:
    driver = await account(client, "DRIVER")
    for stars in (5, 4):
        await insert_trip(
            app,
            rider=await account(client),
            status=TripStatus.COMPLETED,
            driver=driver,
            rating=stars,
        )
    rider = await account(client)
    trip = await request_trip(client, rider)
    steps = [
        (ACCEPT_TRIP, {"id": trip["id"]}, driver, "STARTED"),
        (UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, driver, "IN_PROGRESS"),
        (UPDATE_STATUS, {"id": trip["id"], "status": "COMPLETED"}, driver, "COMPLETED"),
    ]
    for query, variables, actor, status in steps:
        body = await gql(client, query, variables, token=actor.access)
        assert next(iter(body["data"].values()))["status"] == status
    # Two ratings: below the threshold of three.
    body = await gql(client, TRIP, {"id": trip["id"]}, token=rider.access)
    assert body["data"]["trip"]["driver"]["id"] == driver.id
    me = await gql(client, "{ me { rating } }", token=driver.access)
    assert me["data"]["me"]["rating"] is None
    rated = await gql(client, RATE_TRIP, {"id": trip["id"], "rating": 3}, token=rider.access)
    assert rated["data"]["rateTrip"]["rating"] == 3
    again = await gql(client, RATE_TRIP, {"id": trip["id"], "rating": 5}, token=rider.access)
    assert error_code(again) == "CONFLICT"
    me = await gql(client, "{ me { rating } }", token=driver.access)
    assert me["data"]["me"]["rating"] == pytest.approx(4.0)
    rider_me = await gql(client, "{ me { rating } }", token=rider.access)
    assert rider_me["data"]["me"]["rating"] is None


# -- the race --------------------------------------------------------------------------


async def test_twenty_drivers_race_through_two_app_instances(
    client: httpx.AsyncClient, app: Any, settings: Settings
) -> None:
    drivers = [await account(client, "DRIVER") for _ in range(20)]
    trip = await request_trip(client, await account(client))
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as second:
            bodies = await asyncio.gather(
                *(
                    gql(
                        second if i % 2 else client, ACCEPT_TRIP, {"id": trip["id"]}, token=d.access
                    )
                    for i, d in enumerate(drivers)
                )
            )
    winners = [d for d, b in zip(drivers, bodies, strict=True) if "errors" not in b]
    codes = sorted(error_code(b) for b in bodies if "errors" in b)
    assert len(winners) == 1
    assert codes == ["CONFLICT"] * 19
    row = await stored(app, trip["id"])
    assert row.status is TripStatus.STARTED and row.driver_id == int(winners[0].id)


# -- pagination --------------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, token: str, *, between: Any = None) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        body = await gql(client, TRIPS, {"first": 20, "after": after}, token=token)
        page = body["data"]["trips"]
        seen += [e["node"]["id"] for e in page["edges"]]
        assert [e["cursor"] for e in page["edges"]][-1:] == [page["pageInfo"]["endCursor"]]
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]
        if between:
            await between()


async def test_pagination_walks_45_trips_without_gaps(client: httpx.AsyncClient, app: Any) -> None:
    rider = await account(client)
    base = datetime.now(UTC) - timedelta(hours=1)
    ids = []
    for i in range(45):
        # Groups of three share a timestamp: the id breaks the tie.
        when = base + timedelta(seconds=i // 3)
        ids.append(await insert_trip(app, rider=rider, status=TripStatus.CANCELED, created=when))
    seen = await walk(client, rider.access)
    assert len(seen) == 45 and set(seen) == set(ids)
    body = await gql(client, TRIPS, {"first": 0}, token=rider.access)
    assert body["data"]["trips"]["totalCount"] == 45

    inserted: list[str] = []

    async def newer() -> None:
        inserted.append(await insert_trip(app, rider=rider, status=TripStatus.CANCELED))

    during = await walk(client, rider.access, between=newer)
    # New trips are newer than every cursor: the walk neither repeats nor skips.
    assert len(during) == len(set(during)) == 45 and set(during) == set(ids)
    assert inserted and not set(inserted) & set(during)


async def test_bad_cursor_and_page_size(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    body = await gql(client, TRIPS, {"after": "!!garbage!!"}, token=rider.access)
    assert error_code(body) == "BAD_USER_INPUT"
    body = await gql(client, TRIPS, {"first": 101}, token=rider.access)
    assert error_code(body) == "BAD_USER_INPUT"
    body = await gql(client, TRIPS, {"first": -1}, token=rider.access)
    assert error_code(body) == "BAD_USER_INPUT"
    # Written into the document, it is a validation error before anything runs.
    literal = await gql(client, "{ trips(first: 500) { totalCount } }", status=400)
    assert error_code(literal) == "GRAPHQL_VALIDATION_FAILED"
    assert "100" in literal["errors"][0]["message"]


async def test_nested_users_cost_a_constant_number_of_statements(
    client: httpx.AsyncClient, app: Any
) -> None:
    driver = await account(client, "DRIVER")
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = app.state.services.engine.sync_engine
    riders = [await account(client) for _ in range(3)]

    async def measure() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            body = await gql(client, TRIPS, {"first": 50}, token=driver.access)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert "errors" not in body
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    for r in riders:
        await insert_trip(app, rider=r, status=TripStatus.COMPLETED, driver=driver)
    few = await measure()
    for i in range(45):
        rider = riders[i % 3]
        await insert_trip(app, rider=rider, status=TripStatus.CANCELED, driver=driver)
    many = await measure()
    assert many == few <= 6
