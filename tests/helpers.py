"""Small clients for the tests: GraphQL documents and calls over HTTP, users made through
the API, and trips made without it (for publishing straight to the broadcast)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.routing import Route

from taxi.domain.models import TripStatus
from taxi.domain.readmodels import TripView
from taxi.transport.http import TaxiGraphQL

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { id username firstName lastName group photoUrl rating }
}"""
LOG_IN = """
mutation LogIn($username: String!, $password: String!) {
  logIn(username: $username, password: $password) {
    access refresh user { id username group }
  }
}"""
TRIP_FIELDS = """
id created updated pickUpAddress dropOffAddress status rating
rider { id username } driver { id username }
driverLocation { latitude longitude heading recordedAt }
"""
REQUEST_TRIP = f"""
mutation Request($input: RequestTripInput!) {{ requestTrip(input: $input) {{ {TRIP_FIELDS} }} }}"""
ACCEPT_TRIP = f"mutation Accept($id: ID!) {{ acceptTrip(id: $id) {{ {TRIP_FIELDS} }} }}"
UPDATE_STATUS = f"""
mutation Update($id: ID!, $status: TripStatus!) {{
  updateTripStatus(id: $id, status: $status) {{ {TRIP_FIELDS} }}
}}"""
CANCEL_TRIP = f"mutation Cancel($id: ID!) {{ cancelTrip(id: $id) {{ {TRIP_FIELDS} }} }}"
RATE_TRIP = f"""
mutation Rate($id: ID!, $rating: Int!) {{
  rateTrip(id: $id, rating: $rating) {{ {TRIP_FIELDS} }}
}}"""
REPORT_LOCATION = """
mutation Report($tripId: ID!, $location: LocationInput!) {
  reportLocation(tripId: $tripId, location: $location) { latitude longitude heading recordedAt }
}"""
TRIP = f"query Trip($id: ID!) {{ trip(id: $id) {{ {TRIP_FIELDS} }} }}"
TRIP_REQUESTED = f"subscription {{ tripRequested {{ {TRIP_FIELDS} }} }}"
TRIP_UPDATED = f"subscription Watch($id: ID!) {{ tripUpdated(id: $id) {{ {TRIP_FIELDS} }} }}"
TRIPS_UPDATED = f"subscription {{ tripsUpdated {{ {TRIP_FIELDS} }} }}"
DRIVER_LOCATION = """
subscription Follow($tripId: ID!) {
  driverLocation(tripId: $tripId) { latitude longitude heading recordedAt }
}"""
ME = "{ me { id username } }"
REFRESH = "mutation R($r: String!) { refreshToken(refresh: $r) { access refresh } }"
LOG_OUT = "mutation L($r: String!) { logOut(refresh: $r) }"
PASSWORD = "correct-horse-9"


def unique(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    status: int = 200,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def ok(client: httpx.AsyncClient, query: str, variables: dict[str, Any], who: Account) -> Any:
    """A GraphQL call as `who` that must succeed: its `data`."""
    body = await gql(client, query, variables, token=who.access)
    assert "errors" not in body, body
    return body["data"]


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


@dataclass
class Account:
    id: str
    username: str
    group: str
    access: str
    refresh: str


async def account(client: httpx.AsyncClient, group: str = "RIDER", **extra: Any) -> Account:
    username = unique(group.lower())
    body = await gql(
        client,
        SIGN_UP,
        {
            "input": {
                "username": username,
                "firstName": "First",
                "lastName": "Last",
                "password1": PASSWORD,
                "password2": PASSWORD,
                "group": group,
                **extra,
            }
        },
    )
    assert "errors" not in body, body
    body = await gql(client, LOG_IN, {"username": username, "password": PASSWORD})
    assert "errors" not in body, body
    data = body["data"]["logIn"]
    return Account(data["user"]["id"], username, group, data["access"], data["refresh"])


async def request_trip(
    client: httpx.AsyncClient, rider: Account, where: str = "A"
) -> dict[str, Any]:
    body = await gql(
        client,
        REQUEST_TRIP,
        {"input": {"pickUpAddress": f"{where} street 1", "dropOffAddress": f"{where} avenue 2"}},
        token=rider.access,
    )
    assert "errors" not in body, body
    trip: dict[str, Any] = body["data"]["requestTrip"]
    return trip


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


def endpoint(app: Any) -> TaxiGraphQL:
    """The app's HTTP GraphQL endpoint (its `executor` is the WebSocket side's too)."""
    for route in app.routes:
        if isinstance(route, Route) and isinstance(route.endpoint, TaxiGraphQL):
            return route.endpoint
    raise AssertionError("no GraphQL endpoint")
