"""Each hole found when the running service was attacked (issue 9), reproduced as the
attack and refused (PROTOCOL.md: Authentication, Errors, Abuse limits). Server-level
limits are tested against a real `taxi serve` process (tests/procs.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLError
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from websockets.exceptions import ConnectionClosed

from taxi.api.schema.errors import with_codes
from taxi.core.config import Settings, SettingsError
from taxi.domain import auth
from taxi.domain.models import Trip, TripStatus, User, UserGroup
from taxi.domain.services.deactivation import deactivate_user, delete_user
from taxi.main import create_app
from tests.backends import Backend, base_settings, empty_database, sub_prefix
from tests.helpers import (
    ACCEPT_TRIP,
    LOG_IN,
    LOG_OUT,
    ME,
    PASSWORD,
    REFRESH,
    SIGN_UP,
    TRIP_REQUESTED,
    account,
    error_code,
    gql,
    request_trip,
    unique,
)
from tests.live import LiveServer
from tests.ws import LEGACY, TRANSPORT, open_ws, session

TRIPS = "query T($s: [TripStatus!]) { trips(status: $s) { edges { node { id } } } }"
PREFLIGHT = {"Apollo-Require-Preflight": "true"}


def sign_up_input(username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "username": username,
            "firstName": "First",
            "lastName": "Last",
            "password1": password,
            "password2": password,
            **extra,
        }
    }


def fields(body: dict[str, Any]) -> dict[str, list[str]]:
    assert error_code(body) == "BAD_USER_INPUT", body
    found: dict[str, list[str]] = body["errors"][0]["extensions"]["fields"]
    return found


# -- usernames -------------------------------------------------------------------------


async def test_case_and_width_variants_are_one_account(client: httpx.AsyncClient) -> None:
    name = unique("adax")
    assert "errors" not in await gql(client, SIGN_UP, sign_up_input(name))
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name.upper())
    for variant in (name.upper(), name.capitalize(), wide):
        body = await gql(client, SIGN_UP, sign_up_input(variant))
        assert fields(body) == {"username": ["A user with that username already exists."]}
        # Log-in by any variant finds the one user.
        login = await gql(client, LOG_IN, {"username": variant, "password": PASSWORD})
        assert login["data"]["logIn"]["user"]["username"] == name, login


@pytest.mark.parametrize("name", ["\u0430dminx", "caf\u00e9x", "a b", "x\u200by"])
async def test_look_alike_letters_are_refused(client: httpx.AsyncClient, name: str) -> None:
    body = await gql(client, SIGN_UP, sign_up_input(name + unique("")))
    assert "username" in fields(body)


async def test_migration_names_colliding_usernames(backend: Backend, tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from taxi.core.migrate import upgrade

    async with empty_database(backend, tmp_path) as url:
        settings = base_settings(database_url=url)
        await asyncio.to_thread(upgrade, settings, "0001")
        engine = create_async_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                for name in ("Ada", "ADA", "\uff41\uff44\uff41", "bob"):
                    await conn.execute(
                        text(
                            'INSERT INTO "user" (username, first_name, last_name, "group", '
                            "password, is_active, is_staff, date_joined) VALUES "
                            "(:n, 'a', 'b', 'rider', 'x', true, false, CURRENT_TIMESTAMP)"
                        ),
                        {"n": name},
                    )
            with pytest.raises(
                Exception, match=r"collide: ADA = Ada = \uff41\uff44\uff41\. Rename"
            ):
                await asyncio.to_thread(upgrade, settings)
            # Nothing changed; after the rename the migration goes through.
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE \"user\" SET username = 'ada2' WHERE username = 'ADA'")
                )
                await conn.execute(text("DELETE FROM \"user\" WHERE username = 'bob'"))
                await conn.execute(
                    text(
                        "UPDATE \"user\" SET username = 'ada3' WHERE username <> 'Ada' "
                        "AND username <> 'ada2'"
                    )
                )
            await asyncio.to_thread(upgrade, settings)
            async with engine.connect() as conn:
                keys = sorted(
                    (await conn.execute(text('SELECT username_key FROM "user"'))).scalars()
                )
            assert keys == ["ada", "ada2", "ada3"]
        finally:
            await engine.dispose()


# -- passwords -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["password", " " * 12, "1234567890", "password12", "Qwertyuiop", "short-1", "SAME"],
)
async def test_weak_passwords_are_refused(client: httpx.AsyncClient, password: str) -> None:
    name = unique("pw")
    if password == "SAME":
        password = name.upper()
    body = await gql(client, SIGN_UP, sign_up_input(name, password))
    assert "password1" in fields(body), body
    login = await gql(client, LOG_IN, {"username": name, "password": password})
    assert error_code(login) == "UNAUTHENTICATED"


# -- the log-in limit ------------------------------------------------------------------


async def test_case_variants_share_one_failure_count(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The CAROLx attack: guesses at variants of one name, each followed by a good
    log-in elsewhere (once the attacker's own `CAROLx`, now impossible to register)."""
    victim = await account(client)
    attacker = await account(client)
    variants = [victim.username.upper(), victim.username, victim.username.title()]
    for i in range(settings.login_max_failures):
        body = await gql(client, LOG_IN, {"username": variants[i % 3], "password": f"guess-{i}x"})
        assert error_code(body) == "UNAUTHENTICATED"
        good = await gql(client, LOG_IN, {"username": attacker.username, "password": PASSWORD})
        assert "errors" not in good
    body = await gql(client, LOG_IN, {"username": victim.username, "password": PASSWORD})
    assert error_code(body) == "RATE_LIMITED"


async def test_concurrent_guesses_are_counted_before_the_hash(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = await account(client)
    checked: list[int] = []
    real = auth.verify_password

    async def counting(*args: Any, **kwargs: Any) -> Any:
        checked.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(auth, "verify_password", counting)
    guess = {"username": victim.username, "password": "wrong-guess-1"}
    bodies = await asyncio.gather(*(gql(client, LOG_IN, guess) for _ in range(60)))
    codes = [error_code(b) for b in bodies]
    assert codes.count("UNAUTHENTICATED") == settings.login_max_failures == len(checked)
    assert codes.count("RATE_LIMITED") == 60 - settings.login_max_failures


async def test_unknown_user_with_a_huge_password(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Same answer as for a known user, and counted like any failure."""
    known = await account(client)
    unknown = unique("nobody")
    for name in (known.username, unknown):
        body = await gql(client, LOG_IN, {"username": name, "password": "p" * 5000})
        assert error_code(body) == "UNAUTHENTICATED"
        assert body["errors"][0]["message"] == "Invalid username or password"
    for _ in range(settings.login_max_failures - 1):
        await gql(client, LOG_IN, {"username": unknown, "password": "p" * 5000})
    body = await gql(client, LOG_IN, {"username": unknown, "password": "p" * 5000})
    assert error_code(body) == "RATE_LIMITED"


# -- sessions --------------------------------------------------------------------------


async def test_replayed_refresh_token_revokes_the_family(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    child = (await gql(client, REFRESH, {"r": rider.refresh}))["data"]["refreshToken"]
    assert (await gql(client, ME, token=child["access"]))["data"]["me"]["id"] == rider.id
    # The stolen, already rotated token is replayed:
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"
    # ... and every token descended from that log-in stops working.
    assert error_code(await gql(client, REFRESH, {"r": child["refresh"]})) == "UNAUTHENTICATED"
    assert error_code(await gql(client, ME, token=child["access"])) == "UNAUTHENTICATED"
    assert error_code(await gql(client, ME, token=rider.access)) == "UNAUTHENTICATED"
    # Another log-in of the same user is another family: unaffected.
    again = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert "errors" not in await gql(client, ME, token=again["data"]["logIn"]["access"])


async def test_log_out_ends_the_sessions_access_tokens(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    other = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert (await gql(client, LOG_OUT, {"r": rider.refresh}))["data"]["logOut"] is True
    assert error_code(await gql(client, ME, token=rider.access)) == "UNAUTHENTICATED"
    # Only that session: the user's other log-in goes on.
    assert "errors" not in await gql(client, ME, token=other["data"]["logIn"]["access"])


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_log_out_closes_the_sessions_sockets(server: LiveServer, protocol: str) -> None:
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        other = await gql(client, LOG_IN, {"username": driver.username, "password": PASSWORD})
        other_access = other["data"]["logIn"]["access"]
        async with (
            session(server.ws_url, driver.access, protocol) as ws,
            session(server.ws_url, other_access, protocol) as kept,
        ):
            await ws.subscribe("1", TRIP_REQUESTED)
            await kept.subscribe("1", TRIP_REQUESTED)
            assert (await gql(client, LOG_OUT, {"r": driver.refresh}))["data"]["logOut"]
            if protocol == LEGACY:
                message = await ws.recv()
                assert message["type"] == "connection_error", message
            await ws.closed(4403)
            # The other session's socket still works.
            await kept.subscribe("2", ME)
            assert (await kept.next("2"))["me"]["id"] == driver.id


async def test_deactivated_user_is_refused_everywhere(server: LiveServer) -> None:
    services = server.app.state.services
    async with server.http() as client:
        driver = await account(client, "DRIVER")
        rider = await account(client)
        trip = await request_trip(client, rider)
        async with session(server.ws_url, driver.access) as ws:
            await ws.subscribe("1", TRIP_REQUESTED)
            assert await deactivate_user(
                db=services.db,
                events=services.events,
                positions=services.positions,
                settings=services.settings,
                user_id=int(driver.id),
            )
            # An acceptTrip sent over the open socket right away does not run: it is
            # refused, or the socket is closed (4403) before it is read — or before it
            # is even sent.
            with pytest.raises(ConnectionClosed) as closed:
                await ws.subscribe("2", ACCEPT_TRIP, {"id": trip["id"]})
                while True:
                    message = await ws.recv()
                    if message.get("type") in ("next", "error"):
                        payload = message["payload"]
                        errors = payload.get("errors", payload)
                        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED", message
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert error_code(await gql(client, ME, token=driver.access)) == "UNAUTHENTICATED"
        assert error_code(await gql(client, REFRESH, {"r": driver.refresh})) == "UNAUTHENTICATED"
    async with services.db() as db:
        row = await db.get(Trip, uuid.UUID(trip["id"]))
    assert row is not None and row.status is TripStatus.REQUESTED and row.driver_id is None


async def test_deleted_users_id_and_tokens_are_never_reused(
    client: httpx.AsyncClient, app: Any
) -> None:
    services = app.state.services
    old = await account(client)
    assert await delete_user(
        db=services.db,
        events=services.events,
        positions=services.positions,
        settings=services.settings,
        user_id=int(old.id),
    )
    assert error_code(await gql(client, ME, token=old.access)) == "UNAUTHENTICATED"
    new = await account(client)
    assert int(new.id) > int(old.id)
    # The old token names the old id and a session that died with it: refused.
    assert error_code(await gql(client, ME, token=old.access)) == "UNAUTHENTICATED"


# -- sockets ---------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings, with a small per-user socket limit."""
    return settings.model_copy(update={"max_sockets_per_user": 3})


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_sockets_per_user_are_capped(
    server: LiveServer, settings: Settings, protocol: str
) -> None:
    async with server.http() as client:
        rider = await account(client)
        other = await account(client)
    async with (
        session(server.ws_url, rider.access, protocol),
        session(server.ws_url, rider.access, protocol),
        session(server.ws_url, rider.access, protocol),
    ):
        async with open_ws(server.ws_url, protocol) as ws:
            await ws.init({"authToken": rider.access})
            if protocol == LEGACY:
                message = await ws.recv()
                assert message["type"] == "connection_error", message
                assert message["payload"]["extensions"]["code"] == "RATE_LIMITED"
            await ws.closed(4429)
        # Other users are not affected.
        async with session(server.ws_url, other.access, protocol):
            pass
    # Closed sockets no longer count.
    async with session(server.ws_url, rider.access, protocol):
        pass


async def test_legacy_socket_without_connection_init_is_closed(server: LiveServer) -> None:
    async with open_ws(server.ws_url, LEGACY) as ws:
        assert await ws.closed(4408, within=15) == "Connection initialisation timeout"


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_at_most_100_operations_per_socket(server: LiveServer, protocol: str) -> None:
    async with server.http() as client:
        driver = await account(client, "DRIVER")
    async with session(server.ws_url, driver.access, protocol) as ws:
        for i in range(100):
            await ws.subscribe(str(i), TRIP_REQUESTED)
        await ws.subscribe("100", TRIP_REQUESTED)
        error = await ws.error("100")
        assert "limit" in error["message"].lower(), error


# -- lists, variables, text ------------------------------------------------------------


async def test_huge_list_variable_is_refused_before_coercion(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    for size in (101, 600_000):
        body = await gql(client, TRIPS, {"s": ["REQUESTED"] * size}, token=rider.access, status=400)
        assert error_code(body) == "BAD_USER_INPUT"
        assert "at most 100" in body["errors"][0]["message"]
    ok = await gql(client, TRIPS, {"s": ["REQUESTED"] * 100}, token=rider.access)
    assert ok["data"]["trips"] == {"edges": []}


async def test_list_literal_over_100_items_is_refused(client: httpx.AsyncClient) -> None:
    statuses = ", ".join(["REQUESTED"] * 101)
    query = f"{{ trips(status: [{statuses}]) {{ edges {{ node {{ id }} }} }} }}"
    body = await gql(client, query, status=400)
    assert error_code(body) == "BAD_USER_INPUT"


async def test_variables_over_64_kib_are_refused(client: httpx.AsyncClient) -> None:
    variables = sign_up_input(unique(), firstName="x" * (70 * 1024))
    body = await gql(client, SIGN_UP, variables, status=400)
    assert error_code(body) == "BAD_USER_INPUT"
    assert "65536" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"query": "{ me { id } }", "variables": {"a": ' + "[" * 5000 + "]" * 5000 + "}}",
        '{"query": "{ me { id } }", "variables": {"a": "\\ud800"}}',
        '{"query": "mutation { logIn(username: \\"\\ud800\\", password: \\"x\\") { access } }"}',
    ],
    ids=["nesting-5000", "lone-surrogate-variable", "lone-surrogate-document"],
)
async def test_hostile_json_is_a_400(client: httpx.AsyncClient, raw: str) -> None:
    response = await client.post(
        "/graphql", content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"], response.text


@pytest.mark.parametrize("where", ["firstName", "username", "pickUpAddress", "literal"])
async def test_nul_byte_is_bad_user_input(client: httpx.AsyncClient, where: str) -> None:
    if where == "pickUpAddress":
        rider = await account(client)
        body = await gql(
            client,
            "mutation R($i: RequestTripInput!) { requestTrip(input: $i) { id } }",
            {"i": {"pickUpAddress": "A\x00", "dropOffAddress": "B"}},
            token=rider.access,
            status=400,
        )
    elif where == "literal":
        body = await gql(
            client,
            'mutation { logIn(username: "a\\u0000b", password: "p") { access } }',
            status=400,
        )
    else:
        variables = sign_up_input(unique())
        variables["input"][where] += "\x00"
        body = await gql(client, SIGN_UP, variables, status=400)
    assert error_code(body) == "BAD_USER_INPUT"
    text_ = json.dumps(body)
    assert "INSERT" not in text_ and "argon2" not in text_ and "SELECT" not in text_


# -- errors and logs -------------------------------------------------------------------


async def test_sql_parameters_never_appear_in_database_errors(
    client: httpx.AsyncClient, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine hides parameters: an IntegrityError (a duplicate name, as a sign-up
    race produces) says nothing of the row's values, its password hash included."""
    rider = await account(client)
    secret_hash = "$argon2id$v=19$secret-hash-value"
    with pytest.raises(IntegrityError) as caught:
        async with app.state.services.db() as db, db.begin():
            db.add(
                User(
                    username=rider.username,
                    first_name="F",
                    last_name="L",
                    group=UserGroup.RIDER,
                    password=secret_hash,
                )
            )
    assert "secret-hash-value" not in str(caught.value)
    assert rider.username not in str(caught.value)
    # Surfacing through GraphQL, it reaches neither the client nor the log as SQL or
    # values (the driver's detail may quote the key), in development too.
    wrapped = GraphQLError("failed", original_error=caught.value, path=["signUp"])
    with caplog.at_level(logging.ERROR, logger="taxi.domain.errors"):
        [out] = with_codes([wrapped], mask_internal=False)
    assert out.extensions == {"code": "INTERNAL_SERVER_ERROR"}
    assert caplog.records, "the error is logged"
    for seen in (out.message, caplog.text):
        assert "INSERT" not in seen and "secret-hash-value" not in seen, seen
        assert rider.username not in seen, seen


async def test_production_gives_no_field_suggestions(settings: Settings) -> None:
    prod = settings.model_copy(update={"taxi_env": "production", "password_hashing": "default"})
    app = create_app(prod)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = await gql(client, "{ me { usernam } }", status=400)
    assert "Did you mean" not in json.dumps(body), body
    assert "usernam" in body["errors"][0]["message"]


def test_production_refuses_a_short_jwt_secret() -> None:
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        Settings(taxi_env="production", jwt_secret="a" * 31)
    Settings(taxi_env="production", jwt_secret="a" * 32)


# -- uploads ---------------------------------------------------------------------------


def png(width: int = 4, height: int = 3, **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG", **save)
    return out.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG that claims 50,000 x 50,000 pixels in a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def jpeg_with_exif() -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "GPS 48.8584 2.2945 secret location"  # ImageDescription
    Image.new("RGB", (8, 8), (0, 90, 200)).save(out, format="JPEG", exif=exif)
    return out.getvalue()


GIF_JS = b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;alert(document.domain)//;"


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    username: str | None = None,
    headers: dict[str, str] | None = PREFLIGHT,
) -> httpx.Response:
    variables = sign_up_input(username or unique("pic"), photo=None)
    operations = {"query": SIGN_UP, "variables": variables}
    return await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.photo"]}),
        },
        files={"0": ("photo.png", content, "image/png")},
        headers=headers,
    )


def stored(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.media_root).rglob("*") if p.is_file()]


async def test_polyglot_is_neutralised_and_served_inert(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    polyglot = png() + b"<html><script>alert(document.cookie)</script></html>"
    response = await upload(client, polyglot)
    body = response.json()
    assert "errors" not in body, body
    url = body["data"]["signUp"]["photoUrl"]
    served = await client.get(url)
    assert served.status_code == 200
    assert b"<script" not in served.content and b"<html" not in served.content
    with Image.open(io.BytesIO(served.content)) as im:
        assert (im.format, im.size) == ("PNG", (4, 3))
    assert served.headers["x-content-type-options"] == "nosniff"
    csp = served.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp


async def test_metadata_is_stripped(client: httpx.AsyncClient, settings: Settings) -> None:
    photo = jpeg_with_exif()
    assert b"secret location" in photo
    body = (await upload(client, photo)).json()
    assert "errors" not in body, body
    served = await client.get(body["data"]["signUp"]["photoUrl"])
    assert b"secret location" not in served.content and b"Exif" not in served.content
    with Image.open(io.BytesIO(served.content)) as im:
        assert im.format == "JPEG" and im.size == (8, 8)


@pytest.mark.parametrize(
    "content",
    [GIF_JS, png_bomb(), png()[:40], b"<svg onload=alert(1)>"],
    ids=["gif-js", "bomb-50000x50000", "truncated", "svg"],
)
async def test_non_images_and_bombs_are_refused(
    client: httpx.AsyncClient, settings: Settings, content: bytes
) -> None:
    body = (await upload(client, content)).json()
    assert "photo" in fields(body), body
    assert stored(settings) == []


async def test_failed_sign_up_leaves_no_file(client: httpx.AsyncClient, settings: Settings) -> None:
    """Two sign-ups race for one name, both with a photo: the loser's file goes."""
    name = unique("race")
    responses = await asyncio.gather(*(upload(client, png(), username=name) for _ in range(4)))
    bodies = [r.json() for r in responses]
    assert sum("errors" not in b for b in bodies) == 1, bodies
    assert len(stored(settings)) == 1


async def test_sign_ups_are_limited_per_address(backend: Backend, tmp_path: Path) -> None:
    limited = base_settings(
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        media_root=tmp_path / "media",
        signup_max_per_hour=3,
        channel_prefix=sub_prefix("signup"),
    )
    app = create_app(limited)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(3):
                assert "errors" not in await gql(client, SIGN_UP, sign_up_input(unique()))
            body = await gql(client, SIGN_UP, sign_up_input(unique()))
            assert error_code(body) == "RATE_LIMITED"
        other = httpx.ASGITransport(app=app, client=("203.0.113.8", 1234))
        async with httpx.AsyncClient(transport=other, base_url="http://t") as client:
            assert "errors" not in await gql(client, SIGN_UP, sign_up_input(unique()))


# -- CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_simple_cross_site_posts_are_refused(
    client: httpx.AsyncClient, content_type: str
) -> None:
    query = json.dumps({"query": SIGN_UP, "variables": sign_up_input(unique())})
    if content_type == "multipart/form-data":
        response = await upload(client, png(), headers=None)
    else:
        response = await client.post(
            "/graphql", content=query, headers={"content-type": content_type}
        )
    assert response.status_code == 400, response.text
    assert "CSRF" in response.json()["errors"][0]["message"]
    # With the header (which a cross-site page cannot send without a preflight) it runs.
    if content_type == "multipart/form-data":
        assert "errors" not in (await upload(client, png())).json()
    for header in ("Apollo-Require-Preflight", "X-Apollo-Operation-Name"):
        response = await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={header: ""}
        )
        assert response.status_code == 200
