"""The authorization matrix: every trip status x every kind of caller x what they can read,
follow and change, checked against the contract (schema.graphql, PROTOCOL.md):

- a rider sees the trips they requested; a driver sees every REQUESTED trip plus the ones
  they drive; anything else is NOT_FOUND (indistinguishable from a missing trip);
- `driverLocation` is for the trip's rider and driver only;
- anonymous callers are UNAUTHENTICATED (on a socket: closed with 4403 at connection_init);
- a refused mutation changes nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    RATE_TRIP,
    REPORT_LOCATION,
    TRIP,
    UPDATE_STATUS,
    Account,
    account,
    error_code,
    gql,
    request_trip,
)
from tests.live import LiveServer
from tests.ws import TRANSPORT, WsClient, open_ws, session

STATUSES = ["REQUESTED", "STARTED", "IN_PROGRESS", "COMPLETED", "CANCELED"]
CALLERS = ["anonymous", "rider", "other_rider", "driver", "other_driver"]
MOVING = ("STARTED", "IN_PROGRESS")
NEXT_STATUS = {"STARTED": "IN_PROGRESS", "IN_PROGRESS": "COMPLETED"}
WHERE = {"latitude": 48.8566, "longitude": 2.3522, "heading": 180.0}

TRIPS = """
query Trips($status: [TripStatus!]) {
  trips(status: $status, first: 100) {
    totalCount
    edges { node { id status rider { id } driver { id } driverLocation { latitude } } }
  }
}"""
TRIP_UPDATED = (
    "subscription U($id: ID!) { tripUpdated(id: $id) { id status rider { id } driver { id } } }"
)
DRIVER_LOCATION = "subscription L($id: ID!) { driverLocation(tripId: $id) { latitude longitude } }"
TRIPS_UPDATED = """
subscription {
  tripsUpdated { id status rider { id } driver { id } driverLocation { latitude } }
}"""
TRIP_REQUESTED = "subscription { tripRequested { id rider { id } driver { id } } }"
# How long an allowed subscription with nothing to send yet must stay free of errors.
QUIET = 0.3


@dataclass
class World:
    """One trip in `status`, its rider and driver, and two strangers."""

    status: str
    trip_id: str
    callers: dict[str, Account | None]

    def token(self, caller: str) -> str | None:
        who = self.callers[caller]
        return who.access if who else None


async def make_world(c: httpx.AsyncClient, status: str) -> World:
    rider, other_rider = await account(c), await account(c)
    driver, other_driver = await account(c, "DRIVER"), await account(c, "DRIVER")
    trip_id = (await request_trip(c, rider))["id"]

    async def run(query: str, variables: dict[str, Any], who: Account) -> None:
        body = await gql(c, query, variables, token=who.access)
        assert "errors" not in body, body

    if status != "REQUESTED":
        await run(ACCEPT_TRIP, {"id": trip_id}, driver)
        await run(REPORT_LOCATION, {"tripId": trip_id, "location": WHERE}, driver)
    if status in ("IN_PROGRESS", "COMPLETED"):
        await run(UPDATE_STATUS, {"id": trip_id, "status": "IN_PROGRESS"}, driver)
    if status == "COMPLETED":
        await run(UPDATE_STATUS, {"id": trip_id, "status": "COMPLETED"}, driver)
    if status == "CANCELED":
        await run(CANCEL_TRIP, {"id": trip_id}, rider)
    callers: dict[str, Account | None] = {
        "anonymous": None,
        "rider": rider,
        "other_rider": other_rider,
        "driver": driver,
        "other_driver": other_driver,
    }
    return World(status, trip_id, callers)


def callers_for(status: str) -> list[str]:
    # A REQUESTED trip has no driver yet: "its driver" is just another driver.
    return [c for c in CALLERS if not (status == "REQUESTED" and c == "driver")]


# -- what the contract allows ------------------------------------------------------------


def sees(caller: str, status: str) -> bool:
    if caller in ("rider", "driver"):
        return True
    return caller == "other_driver" and status == "REQUESTED"


def location_outcome(caller: str, status: str) -> str:
    """driverLocation: 'next' (the last position first), 'quiet' (allowed, nothing known
    yet), or the error code that ends the operation."""
    if caller in ("rider", "driver"):
        return "next" if status in MOVING else "quiet"
    return "FORBIDDEN" if sees(caller, status) else "NOT_FOUND"


def mutation_outcome(mutation: str, caller: str, status: str) -> str | None:
    """The code that refuses `mutation`; None when the caller may do it (not run here:
    the lifecycle tests cover allowed changes)."""
    if caller == "anonymous":
        return "UNAUTHENTICATED"
    if mutation == "acceptTrip" and caller.endswith("driver"):
        # Every trip was in the pool all drivers saw: one that left it is a lost race.
        return None if status == "REQUESTED" else "CONFLICT"
    if not sees(caller, status):
        return "NOT_FOUND"
    if mutation == "acceptTrip":
        return "FORBIDDEN"  # its own rider
    if mutation in ("cancelTrip", "rateTrip"):
        if caller != "rider":
            return "FORBIDDEN"
        ok = (
            status in ("REQUESTED", "STARTED")
            if mutation == "cancelTrip"
            else status == "COMPLETED"
        )
        return None if ok else "CONFLICT"
    # updateTripStatus, reportLocation: the trip's driver only, while it moves.
    if caller != "driver":
        return "FORBIDDEN"
    return None if status in MOVING else "CONFLICT"


def mutation_call(mutation: str, world: World) -> tuple[str, dict[str, Any]]:
    tid = world.trip_id
    if mutation == "acceptTrip":
        return ACCEPT_TRIP, {"id": tid}
    if mutation == "updateTripStatus":
        return UPDATE_STATUS, {"id": tid, "status": NEXT_STATUS.get(world.status, "COMPLETED")}
    if mutation == "cancelTrip":
        return CANCEL_TRIP, {"id": tid}
    if mutation == "reportLocation":
        return REPORT_LOCATION, {"tripId": tid, "location": {**WHERE, "latitude": 1.0}}
    return RATE_TRIP, {"id": tid, "rating": 1}


MUTATIONS = ["acceptTrip", "updateTripStatus", "cancelTrip", "reportLocation", "rateTrip"]


# -- checks ------------------------------------------------------------------------------


def check_trip_fields(world: World, trip: dict[str, Any]) -> None:
    """The users on a visible trip are exactly its own: no other driver ever shows up."""
    rider, driver = world.callers["rider"], world.callers["driver"]
    assert rider is not None and driver is not None
    assert trip["rider"]["id"] == rider.id
    if world.status == "REQUESTED":
        assert trip["driver"] is None
    else:
        assert trip["driver"]["id"] == driver.id
    if "driverLocation" in trip:
        assert (trip["driverLocation"] is not None) == (world.status in MOVING), trip


async def check_queries(c: httpx.AsyncClient, world: World, caller: str) -> None:
    token = world.token(caller)
    body = await gql(c, TRIP, {"id": world.trip_id}, token=token)
    listed = await gql(c, TRIPS, {}, token=token)
    filtered = await gql(c, TRIPS, {"status": [world.status]}, token=token)
    if caller == "anonymous":
        for b in (body, listed, filtered):
            assert error_code(b) == "UNAUTHENTICATED", b
            assert not any((b["data"] or {}).values()), b
        return
    visible = sees(caller, world.status)
    if visible:
        assert "errors" not in body, (caller, body)
        assert body["data"]["trip"]["id"] == world.trip_id
        assert body["data"]["trip"]["status"] == world.status
        check_trip_fields(world, body["data"]["trip"])
    else:
        assert error_code(body) == "NOT_FOUND", (caller, body)
        assert body["data"] == {"trip": None}
    for b in (listed, filtered):
        assert "errors" not in b, b
        nodes = [e["node"] for e in b["data"]["trips"]["edges"]]
        # The world holds one trip: each caller sees exactly it, or nothing.
        assert [n["id"] for n in nodes] == ([world.trip_id] if visible else []), (caller, nodes)
        assert b["data"]["trips"]["totalCount"] == len(nodes)
        for node in nodes:
            check_trip_fields(world, node)


async def outcomes(ws: WsClient, expected: dict[str, str]) -> dict[str, Any]:
    """Reads until each operation has answered (first `next` or `error`), then listens
    QUIET seconds more when some are expected to stay quiet."""
    got: dict[str, Any] = {}
    loud = {op for op, want in expected.items() if want != "quiet"}
    quiet_until: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        if loud <= set(got) and quiet_until is None:
            if len(got) == len(expected) or not set(expected) - loud:
                return got
            quiet_until = loop.time() + QUIET
        timeout = 10.0 if quiet_until is None else quiet_until - loop.time()
        if timeout <= 0:
            return got
        try:
            message = await ws.recv(timeout)
        except TimeoutError:
            return got
        op = message.get("id")
        if op in got or op not in expected:
            continue
        if message["type"] == "next" and not message["payload"].get("errors"):
            got[op] = ("next", message["payload"]["data"])
        elif message["type"] in ("error", "next"):
            payload = message["payload"]
            errors = payload if isinstance(payload, list) else payload["errors"]
            got[op] = ("error", errors)
        elif message["type"] == "complete":
            got[op] = ("complete", None)


async def check_subscriptions(live: LiveServer, world: World, caller: str) -> None:
    token = world.token(caller)
    if token is None:
        async with open_ws(live.ws_url, TRANSPORT) as ws:
            await ws.init({})
            await ws.closed(4403)
        return
    expected = {
        "u": "next" if sees(caller, world.status) else "NOT_FOUND",
        "l": location_outcome(caller, world.status),
    }
    async with session(live.ws_url, token) as ws:
        await ws.subscribe("u", TRIP_UPDATED, {"id": world.trip_id})
        await ws.subscribe("l", DRIVER_LOCATION, {"id": world.trip_id})
        got = await outcomes(ws, expected)
        # The socket survives refused operations.
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
    for op, want in expected.items():
        where = (world.status, caller, op)
        if want == "quiet":
            assert op not in got, (where, got.get(op))
            continue
        assert op in got, (where, "no answer")
        kind, value = got[op]
        if want == "next":
            assert kind == "next", (where, got[op])
            if op == "u":
                trip = value["tripUpdated"]
                assert trip["id"] == world.trip_id and trip["status"] == world.status
                check_trip_fields(world, trip)
            else:
                assert value["driverLocation"]["latitude"] == WHERE["latitude"]
        else:
            assert kind == "error", (where, got[op])
            codes = [e.get("extensions", {}).get("code") for e in value]
            assert codes == [want], (where, value)
            assert world.trip_id not in json.dumps(value) or want == "FORBIDDEN"


async def check_mutations(c: httpx.AsyncClient, world: World, caller: str) -> None:
    for mutation in MUTATIONS:
        want = mutation_outcome(mutation, caller, world.status)
        if want is None:
            continue
        query, variables = mutation_call(mutation, world)
        body = await gql(c, query, variables, token=world.token(caller))
        assert body["data"] is None, (world.status, caller, mutation, body)
        assert error_code(body) == want, (world.status, caller, mutation, body)


# -- the matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", STATUSES)
async def test_authorization_matrix(server: LiveServer, status: str) -> None:
    async with server.http() as c:
        world = await make_world(c, status)
        rider = world.callers["rider"]
        assert rider is not None
        before = (await gql(c, TRIP, {"id": world.trip_id}, token=rider.access))["data"]["trip"]
        callers = callers_for(status)
        for caller in callers:
            await check_queries(c, world, caller)
        await asyncio.gather(*(check_subscriptions(server, world, who) for who in callers))
        for caller in callers:
            await check_mutations(c, world, caller)
        # Nothing refused above changed the trip.
        after = (await gql(c, TRIP, {"id": world.trip_id}, token=rider.access))["data"]["trip"]
        assert after == before


def test_the_matrix_itself_is_not_vacuous() -> None:
    """Each caller is refused somewhere; each party is allowed somewhere; every code the
    contract names for these refusals occurs."""
    for caller in CALLERS:
        assert any(mutation_outcome(m, caller, s) for m in MUTATIONS for s in STATUSES)
    for caller in ("rider", "driver", "other_driver"):
        assert any(sees(caller, s) for s in STATUSES)
        assert any(mutation_outcome(m, caller, s) is None for m in MUTATIONS for s in STATUSES)
    codes = {mutation_outcome(m, c, s) for m in MUTATIONS for c in CALLERS for s in STATUSES}
    assert codes == {None, "UNAUTHENTICATED", "NOT_FOUND", "FORBIDDEN", "CONFLICT"}
    assert {location_outcome(c, s) for c in CALLERS[1:] for s in STATUSES} == {
        "next",
        "quiet",
        "FORBIDDEN",
        "NOT_FOUND",
    }


# -- per role ------------------------------------------------------------------------------


async def test_roles_for_trip_independent_operations(server: LiveServer) -> None:
    async with server.http() as c:
        rider, driver = await account(c), await account(c, "DRIVER")
        for who in (rider, driver):
            me = await gql(c, "{ me { id group } }", token=who.access)
            assert me["data"]["me"] == {"id": who.id, "group": who.group}
        assert error_code(await gql(c, "{ me { id } }")) == "UNAUTHENTICATED"
        request = {"input": {"pickUpAddress": "a", "dropOffAddress": "b"}}
        from tests.helpers import REQUEST_TRIP

        assert error_code(await gql(c, REQUEST_TRIP, request)) == "UNAUTHENTICATED"
        refused = await gql(c, REQUEST_TRIP, request, token=driver.access)
        assert error_code(refused) == "FORBIDDEN"
        # A trip id that does not exist looks exactly like one the caller may not see.
        missing = await gql(
            c, TRIP, {"id": "00000000-0000-4000-8000-000000000000"}, token=rider.access
        )
        assert error_code(missing) == "NOT_FOUND"
        assert error_code(await gql(c, TRIP, {"id": "nope"}, token=rider.access)) == "NOT_FOUND"

    async with session(server.ws_url, rider.access) as ws:
        await ws.subscribe("r", TRIP_REQUESTED)
        error = await ws.error("r")
        assert error["extensions"]["code"] == "FORBIDDEN"
    async with session(server.ws_url, driver.access) as ws:
        await ws.subscribe("r", TRIP_REQUESTED)
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"


async def test_trips_updated_never_leaks_who_took_a_trip(server: LiveServer) -> None:
    """A driver watching the pool learns that a trip left it, not who took it or where
    that driver is; a stranger rider learns nothing at all."""
    async with server.http() as c:
        rider, stranger = await account(c), await account(c)
        winner, other = await account(c, "DRIVER"), await account(c, "DRIVER")
        async with (
            session(server.ws_url, other.access) as watcher,
            session(server.ws_url, stranger.access) as nosy,
        ):
            await watcher.subscribe("all", TRIPS_UPDATED)
            await nosy.subscribe("all", TRIPS_UPDATED)
            # Subscriptions are registered once a ping round trip proves they were read.
            for ws in (watcher, nosy):
                await ws.send({"type": "ping"})
                assert (await ws.recv())["type"] == "pong"
            trip = await request_trip(c, rider)
            mine = trip["id"]

            def ours(data: dict[str, Any]) -> bool:
                return bool(data["tripsUpdated"]["id"] == mine)

            requested = await watcher.next_where("all", ours)
            assert requested["tripsUpdated"]["status"] == "REQUESTED"
            accepted = await gql(c, ACCEPT_TRIP, {"id": mine}, token=winner.access)
            assert "errors" not in accepted, accepted
            body = await gql(
                c, REPORT_LOCATION, {"tripId": mine, "location": WHERE}, token=winner.access
            )
            assert "errors" not in body, body
            left = (await watcher.next_where("all", ours))["tripsUpdated"]
            assert left["status"] == "STARTED"
            assert left["driver"] is None and left["driverLocation"] is None, left
            assert left["rider"]["id"] == rider.id
            # The location report (and anything after) is not for the watcher.
            with pytest.raises(TimeoutError):
                await watcher.next_where("all", ours, QUIET)
            with pytest.raises(TimeoutError):
                await nosy.next_where("all", ours, QUIET)
