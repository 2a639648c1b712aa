"""Tokens, passwords, logs, production settings and uploads: each protection is proven by
a test that fails when it is removed (PROTOCOL.md: Authentication, Errors)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from passlib.context import CryptContext
from PIL import Image
from sqlalchemy import select, update
from sqlmodel import col
from websockets.exceptions import ConnectionClosed

from taxi.core.config import Settings, SettingsError
from taxi.domain import auth
from taxi.domain.models import User
from taxi.main import create_app
from tests.backends import base_settings
from tests.helpers import (
    ACCEPT_TRIP,
    LOG_IN,
    LOG_OUT,
    ME,
    PASSWORD,
    RATE_TRIP,
    REFRESH,
    REPORT_LOCATION,
    SIGN_UP,
    UPDATE_STATUS,
    Account,
    account,
    error_code,
    gql,
    request_trip,
    unique,
)
from tests.live import LiveServer
from tests.ws import LEGACY, TRANSPORT, open_ws, session

TRIP_UPDATED = "subscription S($id: ID!) { tripUpdated(id: $id) { id status } }"


# -- helpers ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any], claims: dict[str, Any], key: str | None, digest: str = "sha256"
) -> str:
    """A JWT built by hand, so nothing in PyJWT refuses to make the hostile ones."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b""
    if key is not None:
        signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def set_active(live: LiveServer | Any, user_id: str, active: bool) -> None:
    app = live.app if isinstance(live, LiveServer) else live
    async with app.state.services.db() as db, db.begin():
        await db.execute(update(User).where(col(User.id) == int(user_id)).values(is_active=active))


async def stored_hash(app: Any, username: str) -> str:
    async with app.state.services.db() as db:
        row: User = (await db.scalars(select(User).where(col(User.username) == username))).one()
    return row.password


async def set_hash(app: Any, username: str, hashed: str) -> None:
    async with app.state.services.db() as db, db.begin():
        await db.execute(update(User).where(col(User.username) == username).values(password=hashed))


# -- tokens ----------------------------------------------------------------------------

Maker = Callable[[httpx.AsyncClient, LiveServer, Settings, Account], Awaitable[str]]
BAD_TOKENS: dict[str, Maker] = {}


def bad_token(name: str) -> Callable[[Maker], Maker]:
    def register(fn: Maker) -> Maker:
        BAD_TOKENS[name] = fn
        return fn

    return register


def _secret(settings: Settings) -> str:
    assert settings.jwt_secret
    return settings.jwt_secret


@bad_token("missing")
async def _missing(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    return ""


@bad_token("garbage")
async def _garbage(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    return "not.a.jwt"


@bad_token("tampered-signature")
async def _tampered_signature(
    c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account
) -> str:
    # Same header and claims, signed with another key.
    return forge({"alg": "HS256", "typ": "JWT"}, claims_of(a.access), "another-secret-" + "y" * 32)


@bad_token("tampered-payload")
async def _tampered_payload(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    # Another user's id swapped into the claims, the original signature kept.
    other = await account(c)
    header, _payload, signature = a.access.split(".")
    claims = {**claims_of(a.access), "sub": other.id, "id": int(other.id)}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@bad_token("alg-none")
async def _alg_none(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    return forge({"alg": "none", "typ": "JWT"}, claims_of(a.access), None)


@bad_token("alg-hs512")
async def _alg_hs512(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    # The right secret but another algorithm: only HS256 is accepted.
    return forge({"alg": "HS512", "typ": "JWT"}, claims_of(a.access), _secret(s), "sha512")


@bad_token("alg-rs256-header")
async def _alg_rs256(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    # Key confusion: an RS256 header over an HMAC made with the shared secret.
    return forge({"alg": "RS256", "typ": "JWT"}, claims_of(a.access), _secret(s))


@bad_token("expired")
async def _expired(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    now = int(time.time())
    claims = {**claims_of(a.access), "iat": now - 600, "exp": now - 60}
    return jwt.encode(claims, _secret(s), algorithm="HS256")


@bad_token("not-yet-valid")
async def _not_yet_valid(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    claims = {**claims_of(a.access), "nbf": int(time.time()) + 600}
    return jwt.encode(claims, _secret(s), algorithm="HS256")


@bad_token("unknown-user")
async def _unknown_user(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    claims = {**claims_of(a.access), "sub": "987654321", "id": 987654321}
    return jwt.encode(claims, _secret(s), algorithm="HS256")


@bad_token("refresh-as-access")
async def _refresh_as_access(
    c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account
) -> str:
    return a.refresh


@bad_token("revoked-refresh-logout")
async def _revoked_by_logout(
    c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account
) -> str:
    assert (await gql(c, LOG_OUT, {"r": a.refresh}))["data"]["logOut"] is True
    return a.refresh


@bad_token("revoked-refresh-rotated")
async def _revoked_by_rotation(
    c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account
) -> str:
    assert "errors" not in await gql(c, REFRESH, {"r": a.refresh})
    return a.refresh


@bad_token("deactivated-user")
async def _deactivated(c: httpx.AsyncClient, live: LiveServer, s: Settings, a: Account) -> str:
    await set_active(live, a.id, False)
    return a.access


async def test_valid_access_token_is_accepted(server: LiveServer) -> None:
    """The control: the refusals below are about the token, not the transport."""
    async with server.http() as c:
        rider = await account(c)
        assert (await gql(c, ME, token=rider.access))["data"]["me"]["id"] == rider.id
    for protocol in (TRANSPORT, LEGACY):
        async with session(server.ws_url, rider.access, protocol):
            pass


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_is_refused_on_http_and_in_connection_init(
    server: LiveServer, settings: Settings, case: str
) -> None:
    async with server.http() as c:
        rider = await account(c)
        token = await BAD_TOKENS[case](c, server, settings, rider)
        body = await gql(c, ME, token=token)
        assert body["data"] is None
        assert error_code(body) == "UNAUTHENTICATED", body
        # Also as a refresh token where that is a different check.
        if case in ("revoked-refresh-logout", "revoked-refresh-rotated", "deactivated-user"):
            assert error_code(await gql(c, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"

    payload = {"authToken": token} if token else {}
    async with open_ws(server.ws_url, TRANSPORT) as ws:
        await ws.init(payload)
        await ws.closed(4403)
    # Legacy graphql-ws: connection_error, then the server closes the socket.
    async with open_ws(server.ws_url, LEGACY) as ws:
        await ws.init(payload)
        message = await ws.recv()
        assert message["type"] == "connection_error", message
        assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv(5.0)
        assert closed.value.rcvd is not None, "no close frame from the server"


async def test_refresh_token_is_single_use(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    first = await gql(client, REFRESH, {"r": rider.refresh})
    new = first["data"]["refreshToken"]
    assert new["refresh"] != rider.refresh
    # The new one works exactly once; the old one is revoked for good.
    newer = await gql(client, REFRESH, {"r": new["refresh"]})
    assert "errors" not in newer
    assert error_code(await gql(client, REFRESH, {"r": new["refresh"]})) == "UNAUTHENTICATED"
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"
    # logOut revokes; a second logOut says it was not live any more.
    other = await account(client)
    assert (await gql(client, LOG_OUT, {"r": other.refresh}))["data"]["logOut"] is True
    assert (await gql(client, LOG_OUT, {"r": other.refresh}))["data"]["logOut"] is False
    assert error_code(await gql(client, REFRESH, {"r": other.refresh})) == "UNAUTHENTICATED"
    # An access token is no refresh token.
    assert error_code(await gql(client, REFRESH, {"r": other.access})) == "UNAUTHENTICATED"


async def test_deactivated_user_cannot_log_in_or_refresh(
    client: httpx.AsyncClient, app: Any
) -> None:
    rider = await account(client)
    await set_active(app, rider.id, False)
    body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert error_code(body) == "UNAUTHENTICATED"
    assert body["errors"][0]["message"] == "Invalid username or password"
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"


# -- passwords -------------------------------------------------------------------------


async def test_passwords_are_stored_as_salted_argon2(client: httpx.AsyncClient, app: Any) -> None:
    one, two = await account(client), await account(client)
    hashes = [await stored_hash(app, a.username) for a in (one, two)]
    for hashed in hashes:
        assert hashed.startswith("$argon2id$"), hashed
        assert PASSWORD not in hashed
    assert hashes[0] != hashes[1], "same password, same hash: no salt"
    # The API has no way to read a password back.
    body = await gql(client, '{ __type(name: "User") { fields { name } } }')
    names = {f["name"].lower() for f in body["data"]["__type"]["fields"]}
    assert not any("password" in n or "hash" in n for n in names), names


async def test_hash_with_other_parameters_is_rehashed_on_log_in(
    client: httpx.AsyncClient, app: Any, settings: Settings
) -> None:
    rider = await account(client)
    old_params = CryptContext(
        schemes=["argon2"], argon2__memory_cost=2048, argon2__time_cost=2, argon2__parallelism=1
    )
    old = old_params.hash(PASSWORD)
    current = auth.password_context(settings.password_hashing == "fast")
    assert current.needs_update(old), "the test needs parameters the app considers stale"
    await set_hash(app, rider.username, old)

    # A failed log-in changes nothing.
    body = await gql(client, LOG_IN, {"username": rider.username, "password": "wrong-pass-1"})
    assert error_code(body) == "UNAUTHENTICATED"
    assert await stored_hash(app, rider.username) == old

    body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert "errors" not in body, body
    new = await stored_hash(app, rider.username)
    assert new != old and new.startswith("$argon2id$")
    assert not current.needs_update(new)
    assert current.verify(PASSWORD, new)
    # And the next log-in works with the new hash, without rehashing again.
    assert "errors" not in await gql(
        client, LOG_IN, {"username": rider.username, "password": PASSWORD}
    )
    assert await stored_hash(app, rider.username) == new


# -- logs ------------------------------------------------------------------------------

_STANDARD_RECORD_KEYS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", (), None))) | {
    "message",
    "asctime",
}
# The test's own client libraries log what they send; only the server's records count.
_CLIENT_LOGGERS = ("websockets.client", "httpx", "httpcore", "hpack")


def _record_text(handler: logging.Handler, record: logging.LogRecord) -> str:
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}
    return "\n".join([record.getMessage(), repr(record.args), repr(extra), handler.format(record)])


async def test_no_secret_in_the_logs_of_a_whole_ride(
    server: LiveServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Loggers that do not propagate (e.g. JSON-logging setups) are captured too.
    quiet = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if not logging.getLogger(name).propagate
    ]
    for logger in quiet:
        logger.addHandler(caplog.handler)
    wrong = "wrong-password-77"
    secrets = [PASSWORD, wrong, _secret(settings)]
    try:
        async with server.http() as c:
            rider = await account(c)
            driver = await account(c, "DRIVER")
            secrets += [rider.access, rider.refresh, driver.access, driver.refresh]
            body = await gql(c, REFRESH, {"r": rider.refresh})
            pair = body["data"]["refreshToken"]
            secrets += [pair["access"], pair["refresh"]]
            access = pair["access"]
            trip = await request_trip(c, rider)
            async with session(server.ws_url, access) as ws:
                await ws.subscribe("t", TRIP_UPDATED, {"id": trip["id"]})
                await ws.next("t")
                for query, variables in (
                    (ACCEPT_TRIP, {"id": trip["id"]}),
                    (REPORT_LOCATION, {"tripId": trip["id"], "location": _somewhere()}),
                    (UPDATE_STATUS, {"id": trip["id"], "status": "IN_PROGRESS"}),
                    (UPDATE_STATUS, {"id": trip["id"], "status": "COMPLETED"}),
                ):
                    assert "errors" not in await gql(c, query, variables, token=driver.access)
                rated = await gql(c, RATE_TRIP, {"id": trip["id"], "rating": 5}, token=access)
                assert "errors" not in rated, rated
                while (await ws.next("t"))["tripUpdated"]["status"] != "COMPLETED":
                    pass
            # Failed log-ins: a wrong password, an unknown user, a bad token on a socket.
            for username in (rider.username, unique()):
                body = await gql(c, LOG_IN, {"username": username, "password": wrong})
                assert error_code(body) == "UNAUTHENTICATED"
            async with open_ws(server.ws_url) as ws:
                await ws.init({"authToken": rider.refresh})
                await ws.closed(4403)
            assert (await gql(c, LOG_OUT, {"r": pair["refresh"]}))["data"]["logOut"] is True
    finally:
        for logger in quiet:
            logger.removeHandler(caplog.handler)

    records = [r for r in caplog.records if not r.name.startswith(_CLIENT_LOGGERS)]
    assert records, "nothing was captured: the capture itself is broken"
    # Whole tokens, and their signatures alone (a token cut short still leaks them).
    needles = set(secrets) | {t.rsplit(".", 1)[1] for t in secrets if t.count(".") == 2}
    for record in records:
        text = _record_text(caplog.handler, record)
        for needle in needles:
            assert needle not in text, f"secret in a {record.name} log record: {text[:300]}"


def _somewhere() -> dict[str, float]:
    return {"latitude": 52.52, "longitude": 13.405, "heading": 90.0}


# -- production settings -----------------------------------------------------------------


def test_production_refuses_to_start_without_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JWT_SECRET", "TAXI_ENV", "PASSWORD_HASHING"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings(taxi_env="production")
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings(taxi_env="production", jwt_secret="")
    with pytest.raises(SettingsError, match="PASSWORD_HASHING"):
        Settings(taxi_env="production", jwt_secret="s" * 48, password_hashing="fast")
    # Tests get a random per-process secret instead (development: tests/test_devmode.py).
    dev = [Settings(taxi_env="test").jwt_secret for _ in range(2)]
    assert dev[0] and dev[1] and dev[0] != dev[1]
    assert Settings(taxi_env="production", jwt_secret="s" * 48).production


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.mark.parametrize("env", ["production", "development"])
async def test_internal_errors_are_masked_in_production(
    settings: Settings,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(**_kwargs: object) -> None:
        raise RuntimeError("secret detail")

    env_settings = base_settings(
        taxi_env=env,
        password_hashing="default",
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        media_root=settings.media_root,
    )
    monkeypatch.setattr("taxi.domain.services.accounts.authenticate", broken)
    with caplog.at_level(logging.ERROR):
        async with app_client(env_settings) as c:
            response = await c.post(
                "/graphql", json={"query": ME}, headers={"Authorization": "Bearer x"}
            )
    assert response.status_code == 200
    body = response.json()
    assert error_code(body) == "INTERNAL_SERVER_ERROR"
    assert "Traceback" not in response.text and 'File "' not in response.text
    if env == "production":
        assert body["errors"][0]["message"] == "Internal server error."
        assert "secret detail" not in response.text
        assert "RuntimeError" not in response.text
    # The details go to the log, where operators look.
    assert "secret detail" in caplog.text


# -- uploads ---------------------------------------------------------------------------


def png_bytes() -> bytes:
    """A valid 1x1 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def sign_up_with_photo(
    client: httpx.AsyncClient, filename: str, content: bytes, content_type: str
) -> tuple[str, dict[str, Any]]:
    """signUp per the GraphQL multipart request spec: operations, map, then the file."""
    username = unique("photo")
    operations = {
        "query": SIGN_UP,
        "variables": {
            "input": {
                "username": username,
                "firstName": "Pic",
                "lastName": "Ture",
                "password1": PASSWORD,
                "password2": PASSWORD,
                "photo": None,
            }
        },
    }
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.photo"]}),
        },
        files={"0": (filename, content, content_type)},
        # CSRF prevention: a non-JSON POST needs it (PROTOCOL.md "Abuse limits").
        headers={"Apollo-Require-Preflight": "true"},
    )
    assert response.status_code == 200, response.text
    assert "Traceback" not in response.text
    return username, response.json()


def stored_files(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.media_root).rglob("*") if p.is_file()]


async def test_photo_round_trip_with_generated_file_name(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    png = png_bytes()
    _username, body = await sign_up_with_photo(client, "../../evil.png", png, "image/png")
    assert "errors" not in body, body
    url = body["data"]["signUp"]["photoUrl"]
    assert re.fullmatch(r"/media/photos/[0-9a-f]{32}\.png", url), url
    served = await client.get(url)
    assert served.status_code == 200
    # Re-encoded (taxi/domain/photos.py): the same picture, not the same bytes.
    with Image.open(io.BytesIO(served.content)) as im:
        assert (im.format, im.size) == ("PNG", (1, 1))
        assert im.convert("RGB").getpixel((0, 0)) == (255, 128, 0)
    assert served.headers["content-type"] == "image/png"
    # Stored under a generated name inside MEDIA_ROOT; the client's name went nowhere.
    files = stored_files(settings)
    assert [f.name for f in files] == [url.rsplit("/", 1)[1]]
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("evil*")))


async def test_media_paths_cannot_leave_media_root(client: httpx.AsyncClient) -> None:
    for path in ("/media/../pyproject.toml", "/media/%2e%2e/%2e%2e/pyproject.toml"):
        response = await client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "[project]" not in response.text


HOSTILE_PHOTOS = {
    "script-as-png": ("evil.png", b"<html><script>alert(1)</script></html>", "image/png"),
    "php-as-jpeg": ("shell.jpg", b"<?php system($_GET['c']); ?>", "image/jpeg"),
    "svg": (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        "image/svg+xml",
    ),
    "empty": ("empty.png", b"", "image/png"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PHOTOS))
async def test_non_image_photo_is_refused(
    client: httpx.AsyncClient, settings: Settings, case: str
) -> None:
    filename, content, content_type = HOSTILE_PHOTOS[case]
    username, body = await sign_up_with_photo(client, filename, content, content_type)
    assert error_code(body) == "BAD_USER_INPUT"
    assert "photo" in body["errors"][0]["extensions"]["fields"], body
    assert stored_files(settings) == []
    # Nothing was created either.
    login = await gql(client, LOG_IN, {"username": username, "password": PASSWORD})
    assert error_code(login) == "UNAUTHENTICATED"


async def test_photo_over_the_size_limit_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    big = png_bytes() + b"\x00" * settings.max_upload_bytes
    assert len(big) > settings.max_upload_bytes
    _username, body = await sign_up_with_photo(client, "big.png", big, "image/png")
    assert error_code(body) == "BAD_USER_INPUT"
    messages = body["errors"][0]["extensions"]["fields"]["photo"]
    assert any(str(settings.max_upload_bytes) in m for m in messages), messages
    assert stored_files(settings) == []
    # Exactly at the limit is fine.
    exact = png_bytes().ljust(settings.max_upload_bytes, b"\x00")
    _username, body = await sign_up_with_photo(client, "exact.png", exact, "image/png")
    assert "errors" not in body, body
