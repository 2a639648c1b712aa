"""Accounts through the ASGI app: sign-up, log-in, rotation, log-out, rate limiting."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlmodel import col

from taxi.core.config import Settings
from taxi.domain.models import RefreshToken, User
from taxi.main import create_app
from tests.backends import Backend
from tests.helpers import LOG_IN, LOG_OUT, PASSWORD, SIGN_UP, account, error_code, gql, unique

REFRESH = "mutation R($r: String!) { refreshToken(refresh: $r) { access refresh user { id } } }"


def sign_up_vars(**overrides: Any) -> dict[str, Any]:
    values = {
        "username": unique(),
        "firstName": "Ada",
        "lastName": "Lovelace",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    values.update(overrides)
    return {"input": values}


async def test_sign_up_returns_the_user_and_stores_only_a_hash(
    client: httpx.AsyncClient, app: Any
) -> None:
    variables = sign_up_vars(group="DRIVER")
    body = await gql(client, SIGN_UP, variables)
    user = body["data"]["signUp"]
    assert user == {
        "id": user["id"],
        "username": variables["input"]["username"],
        "firstName": "Ada",
        "lastName": "Lovelace",
        "group": "DRIVER",
        "photoUrl": None,
        "rating": None,
    }
    async with app.state.services.db() as session:
        row = (await session.scalars(select(User).where(col(User.id) == int(user["id"])))).one()
    assert row.password.startswith("$argon2") and PASSWORD not in row.password
    assert row.is_active and not row.is_staff and row.date_joined.tzinfo is not None


async def test_group_defaults_to_rider(client: httpx.AsyncClient) -> None:
    body = await gql(client, SIGN_UP, sign_up_vars())
    assert body["data"]["signUp"]["group"] == "RIDER"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password2": "something-else"}, "password2", "Passwords must match."),
        ({"firstName": "   "}, "firstName", "This field may not be blank."),
        ({"lastName": ""}, "lastName", "This field may not be blank."),
        ({"username": ""}, "username", "This field may not be blank."),
        ({"username": "has space"}, "username", None),
        ({"username": "x" * 151}, "username", None),
        ({"password1": "short", "password2": "short"}, "password1", None),
        ({"password1": "12345678901", "password2": "12345678901"}, "password1", None),
    ],
)
async def test_sign_up_validation(
    client: httpx.AsyncClient, overrides: dict[str, str], field: str, message: str | None
) -> None:
    body = await gql(client, SIGN_UP, sign_up_vars(**overrides))
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    messages = error["extensions"]["fields"][field]
    assert messages and all(isinstance(m, str) and m for m in messages)
    if message:
        assert messages == [message]


async def test_duplicate_username(client: httpx.AsyncClient) -> None:
    variables = sign_up_vars()
    await gql(client, SIGN_UP, variables)
    body = await gql(client, SIGN_UP, variables)
    assert error_code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["fields"] == {
        "username": ["A user with that username already exists."]
    }


async def test_concurrent_sign_ups_for_one_username(
    real_backend: Backend, client: httpx.AsyncClient, app: Any
) -> None:
    """On PostgreSQL both requests pass the existence check; the unique index decides."""
    variables = sign_up_vars()
    bodies = await asyncio.gather(*(gql(client, SIGN_UP, variables) for _ in range(5)))
    winners = [b for b in bodies if "errors" not in b]
    losers = [b for b in bodies if "errors" in b]
    assert len(winners) == 1
    assert [error_code(b) for b in losers] == ["BAD_USER_INPUT"] * 4
    for b in losers:
        assert b["errors"][0]["extensions"]["fields"] == {
            "username": ["A user with that username already exists."]
        }
    async with app.state.services.db() as session:
        rows = (
            await session.scalars(
                select(User).where(User.username == variables["input"]["username"])
            )
        ).all()
    assert len(rows) == 1


async def test_log_in_claims(client: httpx.AsyncClient, settings: Settings) -> None:
    rider = await account(client)
    claims = jwt.decode(rider.access, settings.jwt_secret, algorithms=["HS256"])
    assert claims["id"] == int(rider.id)
    assert claims["sub"] == rider.id
    assert claims["username"] == rider.username
    assert claims["first_name"] == "First" and claims["last_name"] == "Last"
    assert claims["group"] == "rider"
    assert claims["photo"] is None
    assert claims["token_type"] == "access"
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl
    assert claims["jti"]
    refresh = jwt.decode(rider.refresh, settings.jwt_secret, algorithms=["HS256"])
    assert refresh["token_type"] == "refresh" and refresh["sub"] == rider.id


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    wrong = await gql(client, LOG_IN, {"username": rider.username, "password": "nope-nope-1"})
    unknown = await gql(client, LOG_IN, {"username": unique("ghost"), "password": "nope-nope-1"})
    for body in (wrong, unknown):
        assert body["data"] is None
        assert body["errors"][0]["message"] == "Invalid username or password"
        assert error_code(body) == "UNAUTHENTICATED"
    strip = [
        {k: v for k, v in b["errors"][0].items() if k != "locations"} for b in (wrong, unknown)
    ]
    assert strip[0] == strip[1]


async def test_unknown_user_still_pays_for_a_hash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal cost: an unknown username is verified against a dummy hash."""
    from taxi.domain import auth

    calls: list[str | None] = []
    real = auth._verify

    def spy(password: str, hashed: str | None, fast: bool) -> tuple[bool, str | None]:
        calls.append(hashed)
        return real(password, hashed, fast)

    monkeypatch.setattr(auth, "_verify", spy)
    await gql(client, LOG_IN, {"username": unique("ghost"), "password": "whatever-1"})
    assert calls == [None]


async def test_refresh_rotation_across_two_app_instances(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    body = await gql(client, REFRESH, {"r": rider.refresh})
    pair = body["data"]["refreshToken"]
    assert pair["user"]["id"] == rider.id
    assert pair["refresh"] != rider.refresh and pair["access"] != rider.access
    # The new access token works.
    me = await gql(client, "{ me { id } }", token=pair["access"])
    assert me["data"]["me"]["id"] == rider.id

    # A second process on the same database accepts the fresh one, once...
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as second:
            rotated = await gql(second, REFRESH, {"r": pair["refresh"]})
            assert "errors" not in rotated
            # ...and refuses the used one.
            again = await gql(second, REFRESH, {"r": pair["refresh"]})
            assert error_code(again) == "UNAUTHENTICATED"
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"


async def test_concurrent_use_of_one_refresh_token(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    bodies = await asyncio.gather(*(gql(client, REFRESH, {"r": rider.refresh}) for _ in range(4)))
    assert sum("errors" not in b for b in bodies) == 1
    assert sorted(error_code(b) for b in bodies if "errors" in b) == ["UNAUTHENTICATED"] * 3


async def test_log_out_revokes_the_refresh_token(client: httpx.AsyncClient, app: Any) -> None:
    rider = await account(client)
    assert (await gql(client, LOG_OUT, {"r": rider.refresh}))["data"]["logOut"] is True
    assert (await gql(client, LOG_OUT, {"r": rider.refresh}))["data"]["logOut"] is False
    assert (await gql(client, LOG_OUT, {"r": "not-a-token"}))["data"]["logOut"] is False
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"
    async with app.state.services.db() as session:
        rows = (await session.scalars(select(RefreshToken))).all()
    assert rows and all(r.revoked_at is not None for r in rows if r.user_id == int(rider.id))


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer garbage", "Basic abc"])
async def test_me_refuses_bad_headers(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": header}
    )
    assert response.status_code == 200
    assert error_code(response.json()) == "UNAUTHENTICATED"


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    rider = await account(client)
    assert error_code(await gql(client, "{ me { id } }", token=rider.refresh)) == "UNAUTHENTICATED"


async def test_repeated_failures_are_rate_limited(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    for _ in range(settings.login_max_failures):
        body = await gql(client, LOG_IN, {"username": rider.username, "password": "bad-bad-bad"})
        assert error_code(body) == "UNAUTHENTICATED"
    # Now even the right password is refused, without checking it.
    body = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert error_code(body) == "RATE_LIMITED"
    # Other usernames are unaffected.
    other = await account(client)
    assert other.access


async def test_rate_limit_is_shared_through_redis(
    real_backend: Backend, client: httpx.AsyncClient, settings: Settings
) -> None:
    """Failures counted by one process lock the name out on another (Redis, str values)."""
    rider = await account(client)
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as second:
            for i in range(settings.login_max_failures):
                target = client if i % 2 else second
                await gql(target, LOG_IN, {"username": rider.username, "password": "bad-bad-1"})
            body = await gql(second, LOG_IN, {"username": rider.username, "password": PASSWORD})
            assert error_code(body) == "RATE_LIMITED"


async def test_successful_log_in_resets_the_failure_count(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    for _ in range(settings.login_max_failures - 1):
        await gql(client, LOG_IN, {"username": rider.username, "password": "bad-bad-bad"})
    assert "errors" not in await gql(
        client, LOG_IN, {"username": rider.username, "password": PASSWORD}
    )
    for _ in range(settings.login_max_failures - 1):
        await gql(client, LOG_IN, {"username": rider.username, "password": "bad-bad-bad"})
    assert "errors" not in await gql(
        client, LOG_IN, {"username": rider.username, "password": PASSWORD}
    )
