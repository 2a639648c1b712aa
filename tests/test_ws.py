"""GraphQL over WebSocket against a real uvicorn: handshake, auth, close codes and live
subscriptions, on both subprotocols (PROTOCOL.md, "Subscriptions").

Mutations go over HTTP to the same server (the embedded backend's memory broadcast is
per process). Global channels (trip requests, every trip) are shared with anyone else on
the same Redis, whose test databases number their users from 1 too, so tests on those
channels pick out their own trips by id."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from taxi import events
from taxi.config import Settings
from taxi.events import Event
from taxi.live.execution import GraphQL
from taxi.live.hub import Hub, Record
from taxi.live.wire import Outbox
from taxi.main import create_app
from taxi.models import TripStatus
from taxi.readmodels import TripView, to_json
from taxi.schema.build import build_schema
from taxi.server import WebSocketProtocol
from taxi.services.live import Feed
from tests.conftest import LiveServer, serve
from tests.helpers import (
    ACCEPT_TRIP,
    DRIVER_LOCATION,
    LOG_IN,
    PASSWORD,
    REPORT_LOCATION,
    REQUEST_TRIP,
    TRIP,
    TRIP_REQUESTED,
    TRIP_UPDATED,
    TRIPS_UPDATED,
    UPDATE_STATUS,
    Account,
    account,
    gql,
    request_trip,
)
from tests.ws import LEGACY, PROTOCOLS, WAIT, WsClient, open_ws, session

ME = "{ me { id username group } }"

both = pytest.mark.parametrize("protocol", PROTOCOLS)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP to the same server process the sockets talk to."""
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


# -- helpers ----------------------------------------------------------------------------


def hub_of(server: LiveServer) -> Hub:
    app: Any = server.app
    hub: Hub = app.state.services.hub
    return hub


async def watching(server: LiveServer, channel: str, count: int = 1) -> None:
    """Until `count` local subscribers listen on `channel`: for streams that send nothing
    first, so the test knows its subscription is live before it publishes."""
    hub = hub_of(server)
    async with asyncio.timeout(WAIT):
        # Polling: the hub has no event for "someone subscribed", nor should it.
        while hub.watchers(channel) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def query(ws: WsClient, op_id: str, document: str = ME) -> dict[str, Any]:
    """A query over the socket: one result, then complete."""
    await ws.subscribe(op_id, document)
    data = await ws.next(op_id)
    await ws.complete(op_id)
    return data


async def ok(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any], user: Account
) -> Any:
    body = await gql(client, document, variables, token=user.access)
    assert "errors" not in body, body
    (value,) = body["data"].values()
    return value


async def accepted_trip(
    client: httpx.AsyncClient, rider: Account, driver: Account
) -> dict[str, Any]:
    trip = await request_trip(client, rider)
    started: dict[str, Any] = await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, driver)
    return started


async def report(
    client: httpx.AsyncClient, driver: Account, trip_id: str, lat: float, lon: float
) -> dict[str, Any]:
    location = {"latitude": lat, "longitude": lon, "heading": 90.0}
    reported: dict[str, Any] = await ok(
        client, REPORT_LOCATION, {"tripId": trip_id, "location": location}, driver
    )
    return reported


def same_trip(trip_id: str, field: str) -> Any:
    return lambda data: data[field]["id"] == trip_id


def fake_trip(*, address: str = "A street 1") -> TripView:
    """A requested trip for publishing straight to the broadcast (no database row)."""
    now = datetime.now(UTC)
    return TripView(
        id=uuid.uuid4(),
        created=now,
        updated=now,
        pick_up_address=address,
        drop_off_address=address,
        status=TripStatus.REQUESTED,
        rider=None,
        driver=None,
        driver_location=None,
        rating=None,
    )


# -- graphql-transport-ws: handshake and close codes ----------------------------------------


@pytest.mark.parametrize("payload", [None, {}, {"authToken": ""}, {"other": "x"}])
async def test_missing_token_closes_4403(server: LiveServer, payload: Any) -> None:
    async with open_ws(server.ws_url) as ws:
        await ws.init(payload)
        assert await ws.closed(4403) == "Forbidden"


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "Bearer not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."]
)
async def test_bad_token_closes_4403(server: LiveServer, token: str) -> None:
    async with open_ws(server.ws_url) as ws:
        await ws.init({"authToken": token})
        assert await ws.closed(4403) == "Forbidden"


async def test_refresh_token_is_not_a_socket_token(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with open_ws(server.ws_url) as ws:
        await ws.init({"authToken": rider.refresh})
        assert await ws.closed(4403) == "Forbidden"


async def test_token_signed_with_another_secret_closes_4403(
    server: LiveServer, settings: Settings
) -> None:
    other = settings.model_copy(update={"jwt_secret": "another-secret-" + "y" * 32})
    async with serve(other) as elsewhere, httpx.AsyncClient(base_url=elsewhere.url) as client:
        rider = await account(client)
    async with open_ws(server.ws_url) as ws:
        await ws.init({"authToken": rider.access})
        assert await ws.closed(4403) == "Forbidden"


@both
async def test_every_accepted_connection_init_key(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider = await account(http)
    payloads: list[dict[str, Any]] = [
        {key: prefix + rider.access}
        for key in ("authToken", "token", "Authorization", "authorization")
        for prefix in ("", "Bearer ", "bearer ")
    ]
    # GraphiQL's Headers tab, as typed there; and clients that nest their headers.
    payloads += [
        {"Authorization": f"Bearer {rider.access}", "X-Other": "1"},
        {"headers": {"Authorization": f"Bearer {rider.access}"}},
    ]
    me = {"me": {"id": rider.id, "username": rider.username, "group": "RIDER"}}
    for payload in payloads:
        async with open_ws(server.ws_url, protocol) as ws:
            await ws.handshake(payload)
            assert await query(ws, "me") == me, payload


async def test_no_connection_init_closes_4408_after_the_default_3s(server: LiveServer) -> None:
    assert server.app.state.settings.ws_init_timeout_seconds == 3  # type: ignore[attr-defined]
    async with open_ws(server.ws_url) as ws:
        assert await ws.closed(4408) == "Connection initialisation timeout"


async def test_init_timeout_is_configurable_and_an_ack_cancels_it(settings: Settings) -> None:
    fast = settings.model_copy(update={"ws_init_timeout_seconds": 0.3})
    async with serve(fast) as live:
        async with open_ws(live.ws_url) as ws:
            assert await ws.closed(4408) == "Connection initialisation timeout"
        async with httpx.AsyncClient(base_url=live.url) as client:
            rider = await account(client)
        async with session(live.ws_url, rider.access) as ws:
            await asyncio.sleep(0.6)  # past the init timeout: the ack cancelled it
            await ws.send({"type": "ping"})
            assert await ws.recv() == {"type": "pong"}


async def test_second_connection_init_closes_4429(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access) as ws:
        await ws.init({"authToken": rider.access})
        assert await ws.closed(4429) == "Too many initialisation requests"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{",
        "[]",
        "42",
        '"connection_init"',
        "{}",
        '{"type": "bogus"}',
        '{"type": 1}',
        '{"type": "subscribe", "id": "1"}',
        '{"type": "subscribe", "id": "1", "payload": "{ me { id } }"}',
        '{"type": "subscribe", "id": "1", "payload": {"query": 1}}',
        '{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "variables": []}}',
        '{"type": "subscribe", "id": 1, "payload": {"query": "{ me { id } }"}}',
        '{"type": "complete"}',
        b"\x00binary",
    ],
)
async def test_malformed_message_closes_4400(
    server: LiveServer, http: httpx.AsyncClient, frame: str | bytes
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access) as ws:
        await ws.conn.send(frame)
        await ws.closed(4400)


async def test_malformed_message_before_init_closes_4400(server: LiveServer) -> None:
    async with open_ws(server.ws_url) as ws:
        await ws.send("not json")
        assert await ws.closed(4400) == "WebSocket message must be valid JSON"


async def test_reused_operation_id_closes_4409(server: LiveServer, http: httpx.AsyncClient) -> None:
    rider = await account(http)
    trip = await request_trip(http, rider)
    async with session(server.ws_url, rider.access) as ws:
        await ws.subscribe("op", TRIP_UPDATED, {"id": trip["id"]})
        assert await ws.next("op") == {"tripUpdated": trip}  # running
        await ws.subscribe("op", ME)
        assert await ws.closed(4409) == "Subscriber for op already exists"


async def test_an_operation_id_is_free_again_once_completed(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access) as ws:
        first = await query(ws, "op")
        assert await query(ws, "op") == first


async def test_subscribe_before_ack_closes_4401(server: LiveServer) -> None:
    async with open_ws(server.ws_url) as ws:
        await ws.subscribe("op", ME)
        assert await ws.closed(4401) == "Unauthorized"


async def test_ping_gets_pong(server: LiveServer, http: httpx.AsyncClient) -> None:
    rider = await account(http)
    async with open_ws(server.ws_url) as ws:
        await ws.send({"type": "ping"})  # allowed before the handshake too
        assert await ws.recv() == {"type": "pong"}
        await ws.handshake({"authToken": rider.access})
        await ws.send({"type": "ping", "payload": {"n": 1}})
        assert await ws.recv() == {"type": "pong"}
        await ws.send({"type": "pong"})  # an unsolicited pong is fine
        assert (await query(ws, "me"))["me"]["id"] == rider.id


@both
async def test_queries_and_mutations_over_the_socket(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access, protocol) as ws:
        await ws.subscribe(
            "request",
            REQUEST_TRIP,
            {"input": {"pickUpAddress": "WS street 1", "dropOffAddress": "WS avenue 2"}},
        )
        trip = (await ws.next("request"))["requestTrip"]
        await ws.complete("request")
        assert (trip["status"], trip["rider"]["id"]) == ("REQUESTED", rider.id)
        await ws.subscribe("trip", TRIP, {"id": trip["id"]})
        assert await ws.next("trip") == {"trip": trip}
        await ws.complete("trip")


# -- legacy graphql-ws ----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, {}, {"authToken": "bad"}, {"token": "Bearer x.y.z"}])
async def test_legacy_bad_token_gets_connection_error_then_close(
    server: LiveServer, payload: Any
) -> None:
    async with open_ws(server.ws_url, LEGACY) as ws:
        await ws.init(payload)
        message = await ws.recv()
        assert message["type"] == "connection_error", message
        assert message["payload"]["extensions"] == {"code": "UNAUTHENTICATED"}
        # Like subscriptions-transport-ws: close with 1011 after the connection_error.
        await ws.closed(1011)


async def test_legacy_refresh_token_gets_connection_error(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with open_ws(server.ws_url, LEGACY) as ws:
        await ws.init({"authToken": rider.refresh})
        assert await ws.recv() == {
            "type": "connection_error",
            "payload": {"message": "Invalid token.", "extensions": {"code": "UNAUTHENTICATED"}},
        }
        await ws.closed(1011)


async def test_legacy_keep_alive(settings: Settings) -> None:
    async with serve(settings.model_copy(update={"ws_keepalive_seconds": 0.1})) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            rider = await account(client)
        async with open_ws(live.ws_url, LEGACY) as ws:
            await ws.init({"authToken": rider.access})
            assert await ws.recv(ka=True) == {"type": "connection_ack"}
            for _ in range(3):
                assert await ws.recv(ka=True) == {"type": "ka"}


async def test_legacy_malformed_messages_are_ignored(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    rider = await account(http)
    async with session(server.ws_url, rider.access, LEGACY) as ws:
        for frame in ("not json", "[]", "42", "{}", '{"type": "start", "id": "1", "payload": 1}'):
            await ws.send(frame)
        assert (await query(ws, "me"))["me"]["id"] == rider.id


# -- token expiry ---------------------------------------------------------------------------


@both
async def test_socket_closes_when_its_token_expires(settings: Settings, protocol: str) -> None:
    async with serve(settings.model_copy(update={"access_token_ttl": 2})) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            rider = await account(client)
            # `exp` is in whole seconds: a token issued just past one lives almost the
            # full 2 s, so connecting never races its expiry.
            await asyncio.sleep(1.02 - time.time() % 1)
            body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
            rider = dataclasses.replace(rider, access=body["data"]["logIn"]["access"])
            trip = await request_trip(client, rider)
        async with session(live.ws_url, rider.access, protocol) as ws:
            await ws.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
            assert await ws.next("trip") == {"tripUpdated": trip}
            if protocol == LEGACY:
                assert await ws.recv() == {
                    "type": "connection_error",
                    "payload": {"message": "Token has expired."},
                }
            assert await ws.closed(4403) == "Forbidden"


# -- subscriptions ----------------------------------------------------------------------------


@both
async def test_trip_requested_reaches_drivers(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider, driver = await account(http, "RIDER"), await account(http, "DRIVER")
    async with session(server.ws_url, driver.access, protocol) as ws:
        await ws.subscribe("pool", TRIP_REQUESTED)
        await watching(server, events.POOL)
        trip = await request_trip(http, rider)
        data = await ws.next_where("pool", same_trip(trip["id"], "tripRequested"))
        assert data == {"tripRequested": trip}
        assert trip["status"] == "REQUESTED"


@both
async def test_trip_updated_sends_current_state_then_each_step(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider, driver = await account(http, "RIDER"), await account(http, "DRIVER")
    trip = await request_trip(http, rider)
    async with session(server.ws_url, rider.access, protocol) as ws:
        await ws.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
        assert await ws.next("trip") == {"tripUpdated": trip}
        started = await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, driver)
        assert started["status"] == "STARTED"
        assert started["driver"] == {"id": driver.id, "username": driver.username}
        assert await ws.next("trip") == {"tripUpdated": started}
        for status in ("IN_PROGRESS", "COMPLETED"):
            moved = await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": status}, driver)
            assert moved["status"] == status
            assert await ws.next("trip") == {"tripUpdated": moved}
        await ws.stop("trip")
        # A later subscriber starts from where the trip stands.
        await ws.subscribe("again", TRIP_UPDATED, {"id": trip["id"]})
        assert await ws.next("again") == {"tripUpdated": moved}


@both
async def test_driver_location_sends_last_known_then_each_report(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider, driver = await account(http, "RIDER"), await account(http, "DRIVER")
    trip = await accepted_trip(http, rider, driver)
    channel = events.location_channel(trip["id"])
    async with session(server.ws_url, rider.access, protocol) as ws:
        # No position yet: nothing first, then the first report.
        await ws.subscribe("early", DRIVER_LOCATION, {"tripId": trip["id"]})
        await watching(server, channel)
        first = await report(http, driver, trip["id"], 52.5, 13.4)
        assert await ws.next("early") == {"driverLocation": first}
        # A new subscriber (the driver too) gets the last known position first.
        async with session(server.ws_url, driver.access, protocol) as own:
            await own.subscribe("late", DRIVER_LOCATION, {"tripId": trip["id"]})
            assert await own.next("late") == {"driverLocation": first}
            second = await report(http, driver, trip["id"], 52.6, 13.5)
            assert second != first
            assert await ws.next("early") == {"driverLocation": second}
            assert await own.next("late") == {"driverLocation": second}


@both
async def test_trips_updated_shows_a_trip_leaving_the_pool_without_its_driver(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider = await account(http, "RIDER")
    winner, other = await account(http, "DRIVER"), await account(http, "DRIVER")
    async with (
        session(server.ws_url, winner.access, protocol) as mine,
        session(server.ws_url, other.access, protocol) as theirs,
    ):
        await mine.subscribe("all", TRIPS_UPDATED)
        await theirs.subscribe("all", TRIPS_UPDATED)
        await watching(server, events.TRIPS, 2)
        trip = await request_trip(http, rider)
        ours = same_trip(trip["id"], "tripsUpdated")
        assert await mine.next_where("all", ours) == {"tripsUpdated": trip}
        assert await theirs.next_where("all", ours) == {"tripsUpdated": trip}

        started = await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, winner)
        assert await mine.next_where("all", ours) == {"tripsUpdated": started}
        # The other driver learns that it left the pool, not who took it.
        redacted = {**started, "driver": None, "driverLocation": None}
        assert await theirs.next_where("all", ours) == {"tripsUpdated": redacted}

        # Later changes are the winner's business only.
        moved = await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, winner)
        assert await mine.next_where("all", ours) == {"tripsUpdated": moved}
        await theirs.subscribe("me", ME)
        while (message := await theirs.recv())["id"] != "me":
            assert message["payload"]["data"]["tripsUpdated"]["id"] != trip["id"], message
        assert message["payload"]["data"]["me"]["id"] == other.id, message


@both
async def test_driver_who_lost_the_race_stops_receiving_the_trip(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider = await account(http, "RIDER")
    winner, loser = await account(http, "DRIVER"), await account(http, "DRIVER")
    trip = await request_trip(http, rider)
    async with (
        session(server.ws_url, winner.access, protocol) as mine,
        session(server.ws_url, loser.access, protocol) as theirs,
    ):
        await mine.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
        await theirs.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
        assert await mine.next("trip") == {"tripUpdated": trip}
        assert await theirs.next("trip") == {"tripUpdated": trip}

        started = await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, winner)
        assert await mine.next("trip") == {"tripUpdated": started}
        await theirs.complete("trip")  # the operation ends; the socket stays open

        moved = await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, winner)
        assert await mine.next("trip") == {"tripUpdated": moved}
        assert (await query(theirs, "me"))["me"]["id"] == loser.id


# -- per-subscription authorization -------------------------------------------------------------


@both
async def test_another_riders_trip_is_not_found_and_the_socket_stays_open(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    owner, stranger = await account(http, "RIDER"), await account(http, "RIDER")
    trip = await request_trip(http, owner)
    async with session(server.ws_url, stranger.access, protocol) as ws:
        await ws.subscribe("trip", TRIP_UPDATED, {"id": trip["id"]})
        error = await ws.error("trip")
        assert error["extensions"]["code"] == "NOT_FOUND", error
        assert error["message"] == "Trip not found."
        await ws.subscribe("car", DRIVER_LOCATION, {"tripId": trip["id"]})
        assert (await ws.error("car"))["extensions"]["code"] == "NOT_FOUND"
        # The socket and its other operations go on.
        assert (await query(ws, "me"))["me"]["id"] == stranger.id
        await ws.subscribe("own", TRIPS_UPDATED)
        await watching(server, events.TRIPS)
        mine = await request_trip(http, stranger, "B")
        # Filtered by id: test databases restart user ids, and trips of someone else's
        # "rider 2" on a shared Redis look like ours (see the module docstring).
        assert await ws.next_where("own", same_trip(mine["id"], "tripsUpdated")) == {
            "tripsUpdated": mine
        }


@both
async def test_a_rider_may_not_subscribe_to_trip_requests(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider = await account(http, "RIDER")
    async with session(server.ws_url, rider.access, protocol) as ws:
        await ws.subscribe("pool", TRIP_REQUESTED)
        assert (await ws.error("pool"))["extensions"]["code"] == "FORBIDDEN"
        assert (await query(ws, "me"))["me"]["id"] == rider.id


@both
@pytest.mark.parametrize("trip_id", ["not-a-uuid", "1", "", str(uuid.uuid4())])
async def test_unknown_trip_id_is_not_found(
    server: LiveServer, http: httpx.AsyncClient, protocol: str, trip_id: str
) -> None:
    rider = await account(http, "RIDER")
    async with session(server.ws_url, rider.access, protocol) as ws:
        await ws.subscribe("trip", TRIP_UPDATED, {"id": trip_id})
        assert (await ws.error("trip"))["extensions"]["code"] == "NOT_FOUND"
        await ws.subscribe("car", DRIVER_LOCATION, {"tripId": trip_id})
        assert (await ws.error("car"))["extensions"]["code"] == "NOT_FOUND"
        assert (await query(ws, "me"))["me"]["id"] == rider.id


@both
async def test_only_the_trips_parties_follow_the_car(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider, driver = await account(http, "RIDER"), await account(http, "DRIVER")
    trip = await request_trip(http, rider)
    async with session(server.ws_url, driver.access, protocol) as ws:
        # Any driver sees a requested trip, but only its parties follow the car.
        await ws.subscribe("car", DRIVER_LOCATION, {"tripId": trip["id"]})
        assert (await ws.error("car"))["extensions"]["code"] == "FORBIDDEN"
        assert (await query(ws, "me"))["me"]["id"] == driver.id


# -- slow subscribers ---------------------------------------------------------------------------


class FakeSeam:
    """A transport that takes frames while `taking` is set, as the server's seam does
    below and above its buffer's high-water mark."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.taking = asyncio.Event()
        self.taking.set()
        self.open = True

    def write_text(self, data: bytes) -> bool:
        if not self.taking.is_set() or not self.open:
            return False
        self.written.append(data)
        return True

    async def drain(self) -> None:
        await self.taking.wait()


async def no_asgi_send(message: Any) -> None:
    raise AssertionError(f"the seam writes frames, not ASGI send: {message}")


async def test_outbox_keeps_the_newest_state_per_key_and_drops_the_oldest() -> None:
    seam = FakeSeam()
    seam.taking.clear()  # a phone that stopped reading
    outbox = Outbox(no_asgi_send, seam, maxsize=3)
    for key, n in [("a", 1), ("b", 1), ("a", 2)]:
        outbox.offer("op", key, b"%s%d" % (key.encode(), n))
    # a's newer state took the stale one's place: nothing skipped ahead of b.
    assert (len(outbox), outbox.coalesced, outbox.dropped) == (2, 1, 0)
    for key in "cdefg":
        outbox.offer("op", key, key.encode())
        assert len(outbox) <= 3
    assert (len(outbox), outbox.dropped) == (3, 4)
    seam.taking.set()
    await outbox.send(b"after")  # behind everything queued
    assert seam.written == [b"e", b"f", b"g", b"after"]
    assert len(outbox) == 0


async def test_outbox_writes_at_once_and_a_backlog_keeps_its_order() -> None:
    """Frames go straight to the transport while it takes them; once one has to wait,
    later ones queue behind it (never ahead), and messages that must arrive wait for
    the backlog."""
    seam = FakeSeam()
    outbox = Outbox(no_asgi_send, seam, maxsize=8)
    outbox.offer("1", "a", b"1")
    assert seam.written == [b"1"]  # within offer(): no task switch
    seam.taking.clear()
    outbox.offer("1", "a", b"2")
    seam.taking.set()  # the transport drained, but 2 is still queued: 3 goes behind it
    outbox.offer("1", "b", b"3")
    await outbox.send(b"4")
    assert seam.written == [b"1", b"2", b"3", b"4"]
    outbox.offer("1", "a", b"5")
    assert seam.written[-1] == b"5"
    # A stopped operation's queued frames are dropped with it.
    seam.taking.clear()
    outbox.offer("1", "a", b"6")
    outbox.offer("2", "a", b"7")
    outbox.forget("1")
    seam.taking.set()
    await outbox.send(b"8")
    assert seam.written[-2:] == [b"7", b"8"]
    # A socket gone while frames wait: they are dropped, nothing hangs.
    seam.taking.clear()
    outbox.offer("2", "a", b"9")
    seam.open = False
    seam.taking.set()
    await outbox.close()
    assert (len(outbox), seam.written[-1]) == (0, b"8")


class Watcher:
    """The socket side of a hub record (hub.Subscriber), recording what it gets."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.ended: list[Exception | None] = []
        self.arrived = asyncio.Event()

    def deliver(self, record: Record, key: str, payload: bytes) -> None:
        self.got.append(payload)
        self.arrived.set()

    def end(self, record: Record, error: Exception | None = None) -> None:
        self.ended.append(error)
        self.arrived.set()

    def refresh(self, record: Record) -> None:
        raise AssertionError("no resync here")


def trip_of(event: Event) -> TripView:
    return event.trip


def _record(app: Any, watcher: Watcher, channel: str, see: Any) -> Record:
    graphql = GraphQL(build_schema(), mask_internal=False, introspection=True)
    document = graphql.prepare("subscription { tripRequested { id } }")
    assert not isinstance(document, list)
    plan = graphql._plan(document, None, None)
    return Record(watcher, "op", b"", Feed((channel,), see), plan)


async def test_a_failing_delivery_ends_only_its_own_subscription(settings: Settings) -> None:
    """The pump delivers to every record of a channel in turn: what one delivery raises
    (a malformed event, a frame that cannot be built) ends that subscription alone,
    with its error; the pump and the others go on."""
    app: Any = create_app(settings)
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.services.hub
        channel = f"test:{uuid.uuid4()}"
        good, bad = Watcher(), Watcher()

        def broken(event: Event) -> Any:
            raise KeyError("trip")

        good_record = _record(app, good, channel, trip_of)
        bad_record = _record(app, bad, channel, broken)
        for record in (bad_record, good_record):
            await hub.add(record)
            hub.release(record)
        for _ in range(3):
            trip = fake_trip()
            message = {"kind": "requested", "key": str(trip.id), "trip": trip}
            good.arrived.clear()
            await app.state.services.broadcast.publish(
                events.full_channel(hub.prefix, channel), to_json(message).decode()
            )
            await asyncio.wait_for(good.arrived.wait(), WAIT)
            expected = {"data": {"tripRequested": {"id": str(trip.id)}}}
            assert orjson.loads(good.got[-1][:-1]) == expected
        assert len(good.got) == 3 and good.ended == []
        assert [type(e) for e in bad.ended] == [KeyError] * 3  # the socket removes it
        hub.remove(good_record)
        hub.remove(bad_record)
        assert hub.watchers(channel) == 0


async def test_a_never_reading_subscriber_stays_bounded(settings: Settings) -> None:
    app: Any = create_app(settings.model_copy(update={"subscriber_queue_size": 8}))
    async with app.router.lifespan_context(app):
        services = app.state.services
        hub: Hub = services.hub
        assert hub.maxsize == 8
        # A channel of its own, so nothing else can overflow the reading socket.
        channel = f"test:{uuid.uuid4()}"
        sent: list[str] = []
        slow_seam, fast_seam = FakeSeam(), FakeSeam()
        slow_seam.taking.clear()
        slow = Outbox(no_asgi_send, slow_seam, maxsize=hub.maxsize)
        fast = Outbox(no_asgi_send, fast_seam, maxsize=hub.maxsize)

        class Sock(Watcher):
            def __init__(self, outbox: Outbox) -> None:
                super().__init__()
                self.outbox = outbox

            def deliver(self, record: Record, key: str, payload: bytes) -> None:
                self.outbox.offer(record.op_id, key, payload)
                self.arrived.set()

        fast_sock = Sock(fast)
        records = [
            _record(app, Sock(slow), channel, trip_of),
            _record(app, fast_sock, channel, trip_of),
        ]
        for record in records:
            await hub.add(record)
            hub.release(record)
        for _ in range(5 * hub.maxsize):
            trip = fake_trip()
            sent.append(str(trip.id))
            message = {"kind": "requested", "key": str(trip.id), "trip": trip}
            fast_sock.arrived.clear()
            await services.broadcast.publish(
                events.full_channel(hub.prefix, channel), to_json(message).decode()
            )
            await asyncio.wait_for(fast_sock.arrived.wait(), WAIT)  # every event, in order
            data = orjson.loads(fast_seam.written[-1][:-1])
            assert data == {"data": {"tripRequested": {"id": str(trip.id)}}}
            assert len(slow) <= hub.maxsize
        assert (len(slow), slow.dropped) == (hub.maxsize, 4 * hub.maxsize)
        # What the slow one kept is the newest of what was sent, oldest first.
        slow_seam.taking.set()
        await slow.send(b"")
        kept = [orjson.loads(f[:-1])["data"]["tripRequested"]["id"] for f in slow_seam.written[:-1]]
        assert kept == sent[-hub.maxsize :]
        assert (len(fast), fast.dropped, len(fast_seam.written)) == (0, 0, 5 * hub.maxsize)
        for record in records:
            hub.remove(record)


def _small_receive_buffer(port: int) -> socket.socket:
    """A client socket that holds little unread data, so a client that stops reading
    pushes back on the server quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_never_reading_socket_does_not_slow_the_others(settings: Settings) -> None:
    # The default queue size: on a shared Redis, a burst of anyone's trips must not
    # overflow the reading subscriber's inbox too.
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
        slow_driver, fast_driver = await account(client, "DRIVER"), await account(client, "DRIVER")
        hub = hub_of(live)
        document = "subscription { tripsUpdated { id pickUpAddress } }"
        port = int(live.url.rsplit(":", 1)[1])
        async with session(
            live.ws_url,
            slow_driver.access,
            sock=_small_receive_buffer(port),
            max_queue=1,
            close_timeout=0.1,  # it cannot read the server's close frame in time anyway
        ) as slow_ws:
            await slow_ws.subscribe("all", document)
            await watching(live, events.TRIPS, 1)
            (record,) = hub._channels[events.TRIPS].records
            slow = record.socket.outbox  # type: ignore[attr-defined]
            async with session(live.ws_url, fast_driver.access) as fast_ws:
                await fast_ws.subscribe("all", document)
                await watching(live, events.TRIPS, 2)
                address = "x" * 32_000  # big events fill the socket buffers sooner
                services = live.app.state.services  # type: ignore[attr-defined]
                full_at, dropped = None, 0
                for n in range(3000):
                    trip = fake_trip(address=address)
                    await services.events.trip_changed(trip, kind="requested")
                    data = await fast_ws.next_where("all", same_trip(str(trip.id), "tripsUpdated"))
                    assert data == {"tripsUpdated": {"id": str(trip.id), "pickUpAddress": address}}
                    assert len(slow) <= hub.maxsize
                    if full_at is None and len(slow) == hub.maxsize:
                        # The socket stopped taking data and the inbox filled up.
                        full_at, dropped = n, slow.dropped
                    if full_at is not None and n >= full_at + 2 * hub.maxsize:
                        break
                assert full_at is not None, "the silent client never pushed back"
                # Still full, and every newer trip pushed out the oldest one.
                assert len(slow) == hub.maxsize
                assert slow.dropped >= dropped + 2 * hub.maxsize


# -- the frame-write seam (taxi/server.py) ---------------------------------------------------


@pytest.mark.parametrize("ws_impl", ["taxi.server:WebSocketProtocol", "websockets-sansio"])
async def test_frames_of_every_length_arrive_whole_with_and_without_the_seam(
    settings: Settings, ws_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam writes each frame's header itself (7-, 16- and 64-bit lengths); a server
    without the seam gets the same frames through ASGI `send`."""
    written: list[int] = []
    write_text = WebSocketProtocol.write_text

    def counting(self: WebSocketProtocol, data: bytes) -> bool:
        written.append(len(data))
        return write_text(self, data)

    monkeypatch.setattr(WebSocketProtocol, "write_text", counting)
    async with serve(settings, ws=ws_impl) as live, httpx.AsyncClient(base_url=live.url) as c:
        driver = await account(c, "DRIVER")
        async with session(live.ws_url, driver.access) as ws:
            await ws.subscribe("all", "subscription { tripsUpdated { id pickUpAddress } }")
            await watching(live, events.TRIPS)
            services = live.app.state.services  # type: ignore[attr-defined]
            for size in (1, 200, 65_000, 70_000, 300_000):
                trip = fake_trip(address="y" * size)
                await services.events.trip_changed(trip, kind="requested")
                data = await ws.next_where("all", same_trip(str(trip.id), "tripsUpdated"))
                assert data == {"tripsUpdated": {"id": str(trip.id), "pickUpAddress": "y" * size}}
            assert (await query(ws, "me"))["me"]["id"] == driver.id
    if ws_impl.startswith("taxi."):
        assert max(written) > 300_000  # every frame, the largest too, went by the seam
    else:
        assert written == []


async def test_an_in_process_listener_hears_its_channels(settings: Settings) -> None:
    """`Hub.subscribe`: one process-wide consumer of channels (e.g. ended sessions), not a
    subscription; the channel stays open while it listens and closes after."""
    app: Any = create_app(settings)
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.services.hub
        one, two = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
        async with hub.subscribe(one, two) as listener:
            assert hub.watchers(one) == hub.watchers(two) == 1
            for channel, n in ((one, 1), (two, 2)):
                await app.state.services.broadcast.publish(
                    events.full_channel(hub.prefix, channel),
                    orjson.dumps({"kind": "session_ended", "key": "k", "n": n}).decode(),
                )
                item = await asyncio.wait_for(anext(listener), WAIT)
                assert (item.kind, item.body["n"]) == (events.Kind.SESSION_ENDED, n)
        assert hub.watchers(one) == hub.watchers(two) == 0
