"""The admin UI at /admin/: staff only, users searchable and deactivatable (which cuts the
user off the API), trips filterable by status and read-only."""

from __future__ import annotations

import httpx
from sqlmodel import select

from taxi.cli import _create_superuser
from taxi.core.config import Settings
from taxi.core.db import open_database
from taxi.domain.models import User
from tests.helpers import ME, PASSWORD, REFRESH, account, error_code, gql, request_trip, unique


async def _log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/admin/login", data={"username": username, "password": password})


async def _staff(client: httpx.AsyncClient, settings: Settings) -> str:
    username = unique("boss")
    await _create_superuser(settings, username, PASSWORD)
    response = await _log_in(client, username, PASSWORD)
    assert response.status_code == 302, response.text
    assert response.headers["location"].endswith("/admin/")
    return username


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
    await _create_superuser(settings, username, PASSWORD)
    assert (await _log_in(client, username, "not-the-password")).status_code == 400
    assert (await client.get("/admin/trip/list")).status_code == 302


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


async def test_deactivation_cuts_the_user_off(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    rider = await account(client)
    assert "errors" not in await gql(client, ME, token=rider.access)
    await _staff(client, settings)

    response = await client.get("/admin/user/action/deactivate", params={"pks": rider.id})
    assert response.status_code == 302

    assert error_code(await gql(client, ME, token=rider.access)) == "UNAUTHENTICATED"
    assert error_code(await gql(client, REFRESH, {"r": rider.refresh})) == "UNAUTHENTICATED"
    log_in = await gql(
        client,
        "mutation L($u: String!, $p: String!) { logIn(username: $u, password: $p) { access } }",
        {"u": rider.username, "p": PASSWORD},
    )
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
    await client.get("/admin/user/action/deactivate", params={"pks": boss_id})
    assert (await client.get("/admin/user/list")).status_code == 302
