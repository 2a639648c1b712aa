"""The admin UI at /admin/: staff only, signed in under the log-in limits, each sign-in a
server-side session that logging out ends; today's figures on the home page; users
searchable, deactivated and reactivated only by POSTs carrying the CSRF token (which
cut the user off the API, and back on); trips with their riders' and drivers' names,
filterable by status and read-only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.applications import Starlette

from taxi.cli import create_superuser
from taxi.core.config import Settings
from taxi.core.db import open_database
from taxi.domain.models import AuthSession, CancelReason, Trip, TripStatus, User
from taxi.main import create_app
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    LOG_IN,
    ME,
    PASSWORD,
    REFRESH,
    Account,
    account,
    error_code,
    gql,
    ok,
    request_trip,
    unique,
)
from tests.wait import eventually

GO_ONLINE = "mutation On($p: LocationInput!) { goOnline(position: $p) { availability } }"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/admin/login", data={"username": username, "password": password})


async def _staff(client: httpx.AsyncClient, settings: Settings) -> str:
    username = unique("boss")
    await create_superuser(settings, username=username, password=PASSWORD)
    response = await _log_in(client, username, PASSWORD)
    assert response.status_code == 302, response.text
    assert response.headers["location"].endswith("/admin/")
    return username


async def _user(settings: Settings, user_id: int | str) -> User:
    async with open_database(settings) as (_engine, sessions), sessions() as session:
        user = await session.get(User, int(user_id))
    assert user is not None
    return user


async def _token(client: httpx.AsyncClient, page: str) -> str:
    """The CSRF token of a form the admin rendered for this session."""
    response = await client.get(page)
    assert response.status_code == 200, response.text
    found = CSRF.search(response.text)
    assert found, response.text
    return found.group(1)


async def _act(
    client: httpx.AsyncClient, user_id: int | str, action: str, *, follow: bool = True
) -> httpx.Response:
    token = await _token(client, f"/admin/user/details/{user_id}")
    return await client.post(
        f"/admin/user/{user_id}/{action}", data={"csrf": token}, follow_redirects=follow
    )


def _figure(page: str, marker: str) -> int:
    found = re.search(marker + r'">\s*(\d+)\s*<', page)
    assert found, page
    return int(found.group(1))


async def test_anonymous_and_non_staff_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/user/list")
    assert response.status_code == 302
    assert response.headers["location"].endswith("/admin/login")
    login_form = await client.get("/admin/login")
    assert 'name="username"' in login_form.text and 'name="password"' in login_form.text

    rider = await account(client)
    refused = await _log_in(client, rider.username, PASSWORD)
    assert refused.status_code == 400
    assert "taxi_admin" not in refused.cookies
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_wrong_password_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    username = unique("boss")
    await create_superuser(settings, username=username, password=PASSWORD)
    assert (await _log_in(client, username, "not-the-password")).status_code == 400
    assert (await client.get("/admin/trip/list")).status_code == 302


@asynccontextmanager
async def running(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of another app on the test's database and Redis, with other settings."""
    app: Starlette = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def short_window(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose log-in window is 2 s, so a test can see it pass."""
    async with running(settings, login_failure_window=2) as client:
        yield client


async def test_admin_log_in_shares_the_log_in_limits(
    short_window: httpx.AsyncClient, settings: Settings
) -> None:
    client = short_window
    username = unique("boss")
    await create_superuser(settings, username=username, password=PASSWORD)
    codes = [(await _log_in(client, username, f"guess-{n}")).status_code for n in range(40)]
    allowed = settings.login_max_failures
    assert codes == [400] * allowed + [429] * (40 - allowed)
    refused = await _log_in(client, username, PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed log-in attempts" in refused.text
    assert "taxi_admin" not in refused.cookies
    # One limit: the API's logIn for the same name is refused too.
    body = await gql(client, LOG_IN, {"username": username, "password": PASSWORD})
    assert error_code(body) == "RATE_LIMITED"

    async def sign_in() -> int:
        return (await _log_in(client, username, PASSWORD)).status_code

    # Once the window has passed, the right password works again.
    await eventually(sign_in, lambda code: code == 302, within=10, what="window never passed")
    assert (await client.get("/admin/user/list")).status_code == 200


async def test_changes_are_posts_with_the_csrf_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    await _staff(client, settings)

    # A GET changes nothing: neither the action's URL nor sqladmin's old action route.
    assert (await client.get(f"/admin/user/{rider.id}/deactivate")).status_code == 405
    old = await client.get("/admin/user/action/deactivate", params={"pks": rider.id})
    assert old.status_code in (404, 405)
    # A POST without the token, or with another one, is refused.
    url = f"/admin/user/{rider.id}/deactivate"
    assert (await client.post(url)).status_code == 403
    assert (await client.post(url, data={"csrf": "forged"})).status_code == 403
    assert (await _user(settings, rider.id)).is_active
    assert "errors" not in await gql(client, ME, token=rider.access)

    done = await _act(client, rider.id, "deactivate")
    assert done.status_code == 200 and done.url.path == f"/admin/user/details/{rider.id}"
    assert "deactivated: signed out everywhere" in done.text
    assert not (await _user(settings, rider.id)).is_active


async def test_log_out_ends_the_session_on_the_server(
    client: httpx.AsyncClient, settings: Settings, app: Starlette
) -> None:
    boss = await _staff(client, settings)
    copied = dict(client.cookies)
    # A GET shows the button and ends nothing.
    page = await client.get("/admin/logout")
    assert page.status_code == 200 and 'method="post"' in page.text
    assert (await client.get("/admin/user/list")).status_code == 200
    assert (await client.post("/admin/logout")).status_code == 403  # no token
    assert (await client.get("/admin/user/list")).status_code == 200

    token = await _token(client, "/admin/logout")
    out = await client.post("/admin/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"].endswith("/admin/login")
    async with open_database(settings) as (_engine, sessions), sessions() as session:
        rows = (
            await session.scalars(select(AuthSession).join(User).where(User.username == boss))
        ).all()
    assert len(rows) == 1 and rows[0].revoked_at is not None

    # The cookie as it was before logging out, replayed by another client: the login page.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", cookies=copied
    ) as thief:
        response = await thief.get("/admin/user/list")
        assert response.status_code == 302
        assert response.headers["location"].endswith("/admin/login")


async def _ride_mix(
    client: httpx.AsyncClient, settings: Settings
) -> tuple[Account, Account, Account]:
    """Today: one trip REQUESTED, one STARTED (by a driver now online), one CANCELED by
    its rider, one expired (CANCELED, NO_DRIVER_FOUND)."""
    waiting, riding, canceling = [await account(client) for _ in range(3)]
    driver = await account(client, "DRIVER")
    await request_trip(client, waiting)
    started = await request_trip(client, riding)
    canceled = await request_trip(client, canceling)
    await ok(client, CANCEL_TRIP, {"id": canceled["id"]}, canceling)
    await ok(client, GO_ONLINE, {"p": {"latitude": 52.52, "longitude": 13.4}}, driver)
    await ok(client, ACCEPT_TRIP, {"id": started["id"]}, driver)
    # An expired request as the ride's life leaves it (its expiry is tested in
    # test_rides.py): a row, so that no second dispatcher runs here.
    lonely = await account(client)
    async with open_database(settings) as (_engine, sessions), sessions() as session:
        session.add(
            Trip(
                pick_up_address="A street 1",
                drop_off_address="A avenue 2",
                rider_id=int(lonely.id),
                status=TripStatus.CANCELED,
                cancel_reason=CancelReason.NO_DRIVER_FOUND,
            )
        )
        await session.commit()
    return riding, driver, canceling


async def test_home_figures_trips_and_reactivation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await _staff(client, settings)
    before = _figure((await client.get("/admin/")).text, 'id="drivers-online')
    riding, driver, _ = await _ride_mix(client, settings)

    home = await client.get("/admin/")
    assert home.status_code == 200
    assert _figure(home.text, 'data-status="REQUESTED') == 1
    assert _figure(home.text, 'data-status="STARTED') == 1
    assert _figure(home.text, 'data-status="CANCELED') == 2
    assert _figure(home.text, 'data-status="COMPLETED') == 0
    assert _figure(home.text, 'id="trips-total') == 4
    assert _figure(home.text, 'id="requests-expired') == 1
    # The driver online before this test's: none, unless another test left one.
    assert _figure(home.text, 'id="drivers-online') == before + 1

    # Trips carry their people's names, not only ids.
    trips = await client.get("/admin/trip/list", params={"status": "STARTED"})
    assert f"First Last ({riding.username})" in trips.text
    assert f"First Last ({driver.username})" in trips.text
    canceled = await client.get("/admin/trip/list", params={"status": "CANCELED"})
    assert "Cancel reason" in canceled.text
    assert "RIDER_CANCELED" in canceled.text and "NO_DRIVER_FOUND" in canceled.text

    out = await _act(client, riding.id, "deactivate")
    assert f"First Last ({riding.username}) deactivated" in out.text
    assert not (await _user(settings, riding.id)).is_active
    assert error_code(await gql(client, ME, token=riding.access)) == "UNAUTHENTICATED"

    back = await _act(client, riding.id, "reactivate")
    assert back.status_code == 200
    assert f"First Last ({riding.username}) reactivated: can log in again" in back.text
    assert (await _user(settings, riding.id)).is_active
    # The old tokens stay dead; a new log-in works.
    assert error_code(await gql(client, ME, token=riding.access)) == "UNAUTHENTICATED"
    body = await gql(client, LOG_IN, {"username": riding.username, "password": PASSWORD})
    assert "errors" not in body, body

    token = await _token(client, f"/admin/user/details/{riding.id}")
    missing = await client.post(
        "/admin/user/999999/reactivate", data={"csrf": token}, follow_redirects=True
    )
    assert missing.url.path == "/admin/user/list" and "No user 999999" in missing.text


async def test_staff_lists_and_searches_users_and_filters_trips(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    other = await account(client)
    trip = await request_trip(client, rider)
    await _staff(client, settings)

    users = await client.get("/admin/user/list", params={"search": rider.username})
    assert users.status_code == 200
    assert rider.username in users.text
    assert other.username not in users.text

    requested = await client.get("/admin/trip/list", params={"status": "REQUESTED"})
    assert requested.status_code == 200
    assert trip["id"] in requested.text
    completed = await client.get("/admin/trip/list", params={"status": "COMPLETED"})
    assert completed.status_code == 200
    assert trip["id"] not in completed.text

    # Trips are read-only: no edit, create or delete pages.
    assert (await client.get(f"/admin/trip/edit/{trip['id']}")).status_code in (403, 404)
    assert (await client.get("/admin/trip/create")).status_code in (403, 404)
    detail = await client.get(f"/admin/trip/details/{trip['id']}")
    assert detail.status_code == 200 and "REQUESTED" in detail.text
    assert f"First Last ({rider.username})" in detail.text


async def test_deactivation_cuts_the_user_off(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    assert "errors" not in await gql(client, ME, token=rider.access)
    await _staff(client, settings)

    response = await _act(client, rider.id, "deactivate", follow=False)
    assert response.status_code == 303

    assert error_code(await gql(client, ME, token=rider.access)) == "UNAUTHENTICATED"
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"
    log_in = await gql(client, LOG_IN, {"username": rider.username, "password": PASSWORD})
    assert error_code(log_in) == "UNAUTHENTICATED"
    listed = await client.get("/admin/user/list", params={"search": rider.username})
    assert rider.username in listed.text


async def test_a_deactivated_staff_user_loses_the_admin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    boss = await _staff(client, settings)
    async with open_database(settings) as (_engine, sessions), sessions() as session:
        boss_id = (await session.scalars(select(User.id).where(User.username == boss))).one()
    assert (await client.get("/admin/user/list")).status_code == 200
    await _act(client, boss_id, "deactivate", follow=False)
    assert (await client.get("/admin/user/list")).status_code == 302
