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
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from taxi.core.config import Settings
from taxi.domain import events
from taxi.transport.live.socket import Socket
from taxi.transport.server import WEBSOCKET, WebSocketProtocol
from tests import gqlws
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
    fake_trip,
    gql,
    ok,
    request_trip,
)
from tests.live import LiveServer, serve, watching
from tests.wait import eventually
from tests.ws import LEGACY, PROTOCOLS, WsClient, open_ws, session

ME = "{ me { id username group } }"
ME_ID = "{ me { id } }"

both = pytest.mark.parametrize("protocol", PROTOCOLS)


# -- helpers ----------------------------------------------------------------------------


async def refused(
    ws: WsClient, op_id: str, document: str, variables: dict[str, Any] | None = None
) -> str:
    """Subscribes, and the operation ends with one error (the socket stays open): its code."""
    await ws.subscribe(op_id, document, variables)
    code: str = (await ws.error(op_id))["extensions"]["code"]
    return code


async def query(ws: WsClient, op_id: str, document: str = ME) -> dict[str, Any]:
    """A query over the socket: one result, then complete."""
    await ws.subscribe(op_id, document)
    data = await ws.next(op_id)
    await ws.complete(op_id)
    return data


async def accepted_trip(
    client: httpx.AsyncClient, rider: Account, driver: Account
) -> dict[str, Any]:
    trip = await request_trip(client, rider)
    started: dict[str, Any] = (await ok(client, ACCEPT_TRIP, {"id": trip["id"]}, driver))[
        "acceptTrip"
    ]
    return started


async def report(
    client: httpx.AsyncClient, driver: Account, trip_id: str, lat: float, lon: float
) -> dict[str, Any]:
    location = {"latitude": lat, "longitude": lon, "heading": 90.0}
    variables = {"tripId": trip_id, "location": location}
    reported: dict[str, Any] = (await ok(client, REPORT_LOCATION, variables, driver))[
        "reportLocation"
    ]
    return reported


def same_trip(trip_id: str, field: str) -> Any:
    return lambda data: data[field]["id"] == trip_id


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
    async with serve(other) as elsewhere, elsewhere.http() as client:
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
    assert server.app.state.settings.ws_init_timeout_seconds == 3
    async with open_ws(server.ws_url) as ws:
        assert await ws.closed(4408) == "Connection initialisation timeout"


async def test_init_timeout_is_configurable_and_an_ack_cancels_it(settings: Settings) -> None:
    fast = settings.model_copy(update={"ws_init_timeout_seconds": 0.3})
    async with serve(fast) as live:
        async with open_ws(live.ws_url) as ws:
            assert await ws.closed(4408) == "Connection initialisation timeout"
        async with live.http() as client:
            rider = await account(client)
        async with session(live.ws_url, rider.access) as ws:
            # Waits out the init timeout on purpose (what is tested): the ack cancelled it.
            await asyncio.sleep(0.6)
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
        async with live.http() as client:
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
        async with live.http() as client:
            rider = await account(client)
            # Before the short-lived token: only the socket has to fit in its life.
            trip = await request_trip(client, rider)
            # `exp` is in whole seconds: a token issued just past one lives almost the
            # full 2 s, so connecting never races its expiry. (Waits for the clock, not
            # a synchronisation.)
            await asyncio.sleep(1.02 - time.time() % 1)
            body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
            rider = dataclasses.replace(rider, access=body["data"]["logIn"]["access"])
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
        await watching(server.app, events.POOL)
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
        started = (await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, driver))["acceptTrip"]
        assert started["status"] == "STARTED"
        assert started["driver"] == {"id": driver.id, "username": driver.username}
        assert await ws.next("trip") == {"tripUpdated": started}
        for status in ("IN_PROGRESS", "COMPLETED"):
            moved = (await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": status}, driver))[
                "updateTripStatus"
            ]
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
        await watching(server.app, channel)
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
        await watching(server.app, events.TRIPS, 2)
        trip = await request_trip(http, rider)
        ours = same_trip(trip["id"], "tripsUpdated")
        assert await mine.next_where("all", ours) == {"tripsUpdated": trip}
        assert await theirs.next_where("all", ours) == {"tripsUpdated": trip}

        started = (await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, winner))["acceptTrip"]
        assert await mine.next_where("all", ours) == {"tripsUpdated": started}
        # The other driver learns that it left the pool, not who took it.
        redacted = {**started, "driver": None, "driverLocation": None}
        assert await theirs.next_where("all", ours) == {"tripsUpdated": redacted}

        # Later changes are the winner's business only.
        moved = (
            await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, winner)
        )["updateTripStatus"]
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

        started = (await ok(http, ACCEPT_TRIP, {"id": trip["id"]}, winner))["acceptTrip"]
        assert await mine.next("trip") == {"tripUpdated": started}
        await theirs.complete("trip")  # the operation ends; the socket stays open

        moved = (
            await ok(http, UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}, winner)
        )["updateTripStatus"]
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
        assert await refused(ws, "car", DRIVER_LOCATION, {"tripId": trip["id"]}) == "NOT_FOUND"
        # The socket and its other operations go on.
        assert (await query(ws, "me"))["me"]["id"] == stranger.id
        await ws.subscribe("own", TRIPS_UPDATED)
        await watching(server.app, events.TRIPS)
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
        assert await refused(ws, "pool", TRIP_REQUESTED) == "FORBIDDEN"
        assert (await query(ws, "me"))["me"]["id"] == rider.id


@both
@pytest.mark.parametrize("trip_id", ["not-a-uuid", "1", "", str(uuid.uuid4())])
async def test_unknown_trip_id_is_not_found(
    server: LiveServer, http: httpx.AsyncClient, protocol: str, trip_id: str
) -> None:
    rider = await account(http, "RIDER")
    async with session(server.ws_url, rider.access, protocol) as ws:
        assert await refused(ws, "trip", TRIP_UPDATED, {"id": trip_id}) == "NOT_FOUND"
        assert await refused(ws, "car", DRIVER_LOCATION, {"tripId": trip_id}) == "NOT_FOUND"
        assert (await query(ws, "me"))["me"]["id"] == rider.id


@both
async def test_only_the_trips_parties_follow_the_car(
    server: LiveServer, http: httpx.AsyncClient, protocol: str
) -> None:
    rider, driver = await account(http, "RIDER"), await account(http, "DRIVER")
    trip = await request_trip(http, rider)
    async with session(server.ws_url, driver.access, protocol) as ws:
        # Any driver sees a requested trip, but only its parties follow the car.
        assert await refused(ws, "car", DRIVER_LOCATION, {"tripId": trip["id"]}) == "FORBIDDEN"
        assert (await query(ws, "me"))["me"]["id"] == driver.id


# -- slow subscribers ---------------------------------------------------------------------------


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
    async with serve(settings) as live, live.http() as client:
        slow_driver, fast_driver = await account(client, "DRIVER"), await account(client, "DRIVER")
        hub = live.hub
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
            await watching(live.app, events.TRIPS, 1)
            (record,) = hub._channels[events.TRIPS].records
            slow = record.socket.outbox
            async with session(live.ws_url, fast_driver.access) as fast_ws:
                await fast_ws.subscribe("all", document)
                await watching(live.app, events.TRIPS, 2)
                address = "x" * 32_000  # big events fill the socket buffers sooner
                services = live.app.state.services
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


# -- the frame-write seam (taxi/transport/server.py) ----------------------------------------


@pytest.mark.parametrize("ws_impl", [WEBSOCKET, "websockets-sansio"])
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
    async with serve(settings, ws=ws_impl) as live, live.http() as c:
        driver = await account(c, "DRIVER")
        async with session(live.ws_url, driver.access) as ws:
            await ws.subscribe("all", "subscription { tripsUpdated { id pickUpAddress } }")
            await watching(live.app, events.TRIPS)
            services = live.app.state.services
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


# -- the receive seam (taxi/transport/server.py) --------------------------------------------


@pytest.mark.parametrize("ws_impl", [WEBSOCKET, "websockets-sansio"])
async def test_a_burst_of_messages_is_answered_whole_with_and_without_the_receive_seam(
    settings: Settings, ws_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Operations sent back to back, a ping among them, without waiting for answers: the
    seam starts what it can as it arrives and leaves the rest (the ping, whatever arrives
    while the socket's loop has work queued) to ASGI `receive`; every operation is
    answered once, the ping too, and the socket stays open. A server without the seam
    answers the same through ASGI alone."""
    taken: list[bool] = []
    heard = Socket.heard

    def counting(self: Socket, text: str) -> bool:
        taken.append(heard(self, text))
        return taken[-1]

    monkeypatch.setattr(Socket, "heard", counting)
    async with serve(settings, ws=ws_impl) as live, live.http() as c:
        rider = await account(c, "RIDER")
        async with session(live.ws_url, rider.access) as ws:
            ids = [f"q{i}" for i in range(20)]
            for op_id in ids[:10]:
                await ws.subscribe(op_id, ME_ID)
            await ws.send(gqlws.PING)
            for op_id in ids[10:]:
                await ws.subscribe(op_id, ME_ID)
            seen: dict[str, list[str]] = {op_id: [] for op_id in ids}
            pongs = 0
            while pongs < 1 or any(kinds != ["next", "complete"] for kinds in seen.values()):
                message = await ws.recv()
                if message["type"] == "pong":
                    pongs += 1
                    continue
                seen[message["id"]].append(message["type"])
                if message["type"] == "next":
                    assert message["payload"] == {"data": {"me": {"id": rider.id}}}
            assert pongs == 1
            assert (await query(ws, "after", ME_ID))["me"]["id"] == rider.id
    if ws_impl == WEBSOCKET:
        assert any(taken)  # some went by the seam (how many depends on TCP's segments)
    else:
        assert taken == []


async def test_only_a_quiet_socket_gets_keep_alive_pings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's keep-alive ping (every 0.5 s here) goes to a socket that sent nothing for
    that long; one that sends a message more often is evidently there and is not pinged
    (taxi/transport/server.py, 4.)."""
    pinged: list[int] = []  # the client port of each socket pinged
    ping = WebSocketsSansIOProtocol.send_keepalive_ping

    def counting(self: WebSocketsSansIOProtocol) -> None:
        assert self.client is not None
        pinged.append(self.client[1])
        ping(self)

    monkeypatch.setattr(WebSocketsSansIOProtocol, "send_keepalive_ping", counting)
    async with serve(settings, ping=0.5) as live, live.http() as c:
        rider = await account(c, "RIDER")
        async with (
            session(live.ws_url, rider.access) as quiet,
            session(live.ws_url, rider.access) as busy,
        ):
            quiet_port, busy_port = quiet.conn.local_address[1], busy.conn.local_address[1]
            started = time.monotonic()
            while time.monotonic() - started < 2.0:  # four intervals
                await busy.send(gqlws.PING)
                assert await busy.recv() == gqlws.PONG
                await asyncio.sleep(0.05)  # the busy client's pace, not a wait for the server
            assert pinged.count(quiet_port) >= 2
            assert pinged.count(busy_port) == 0


SPREAD_SOCKETS = 16


async def test_keep_alive_pings_of_sockets_opened_together_are_spread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quiet sockets opened (and initialised) at once get their first keep-alive ping at
    random points of half an interval (0.5 s of 1 s here), not all at the same moment
    (taxi/transport/server.py, 6.)."""
    first: dict[int, float] = {}  # client port -> the loop's time of its first ping
    ping = WebSocketsSansIOProtocol.send_keepalive_ping

    def recording(self: WebSocketsSansIOProtocol) -> None:
        assert self.client is not None
        first.setdefault(self.client[1], self.loop.time())
        ping(self)

    monkeypatch.setattr(WebSocketsSansIOProtocol, "send_keepalive_ping", recording)
    async with serve(settings, ping=1.0) as live, live.http() as c:
        rider = await account(c, "RIDER")
        async with AsyncExitStack() as stack:
            opening = [
                stack.enter_async_context(session(live.ws_url, rider.access))
                for _ in range(SPREAD_SOCKETS)
            ]
            sockets = await asyncio.gather(*opening)
            ports = {ws.conn.local_address[1] for ws in sockets}

            async def pinged() -> int:
                return len(ports & first.keys())

            await eventually(pinged, lambda n: n == SPREAD_SOCKETS, what="every socket pinged")
    times = [first[p] for p in ports]
    # Without the spread they are pinged within the milliseconds they were opened in; drawn
    # from 0.5 s, sixteen first pings spread past 0.2 s (all but certainly).
    assert max(times) - min(times) > 0.2, sorted(times)
