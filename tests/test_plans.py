"""Read-only queries answered by a plan (taxi/api/strategies/reads.py) answer exactly as
graphql-core's execution does: same status, same body, for every shape a client may send and
every error; what the plans do not recognise takes the full path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from graphql import ExecutionResult

from taxi.api.context import Context
from taxi.api.strategies.reads import Plan
from taxi.domain.services import sessions
from tests.helpers import LOG_OUT, Account, account, endpoint, error_code, gql, request_trip

NODE = """id created updated pickUpAddress dropOffAddress status rating
rider { id username firstName lastName group photoUrl rating }
driver { id username firstName lastName group photoUrl rating }
driverLocation { latitude longitude heading recordedAt } pickUp { latitude longitude }"""
TRIPS = f"""query Trips {{ trips(first: 20) {{
  totalCount pageInfo {{ hasNextPage endCursor }} edges {{ cursor node {{ {NODE} }} }} }} }}"""
ALIASES = """{ mine: trips(first: 1) { count: totalCount info: pageInfo { more: hasNextPage }
  edges { node { tripId: id s: status who: rider { n: username } } } } }"""
FRAGMENTS = """fragment U on User { id username rating }
fragment T on Trip { id status driver { ...U } }
query Page { trips { edges { node { ...T ... on Trip { created } ... { updated } } } } }"""
TYPENAMES = """{ __typename trips { __typename pageInfo { __typename } edges { __typename
  node { __typename rider { __typename id } pickUp { __typename } } } } }"""
MERGED = "{ trips { edges { node { id } } edges { cursor node { status } } } }"
DIRECTIVES = """query ($x: Boolean!) { trips { edges @include(if: $x) { cursor }
  totalCount @skip(if: $x) } }"""
STATUS = "query ($s: [TripStatus!]) { trips(status: $s) { totalCount edges { node { id } } } }"
LITERAL_STATUS = "{ trips(status: [COMPLETED, REQUESTED]) { totalCount } }"
FIRST = "query ($n: Int, $a: String) { trips(first: $n, after: $a) { edges { cursor } } }"
ONE = "query ($id: ID!) { trip(id: $id) { id status rider { username } } }"
MIXED = "{ trips { totalCount } me { id } }"
UNKNOWN = "{ trips { nope } }"
TOO_MANY = "{ trips(first: 101) { totalCount } }"

Post = Callable[[str, dict[str, Any] | None, str | None], Awaitable[tuple[int, Any]]]


async def completed_trip(client: httpx.AsyncClient, rider: Account, driver: Account) -> None:
    trip = await request_trip(client, rider, "Done")
    steps = [
        ("mutation ($id: ID!) { acceptTrip(id: $id) { id } }", {}, driver),
        (
            "mutation ($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { id } }",
            {"s": "IN_PROGRESS"},
            driver,
        ),
        (
            "mutation ($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { id } }",
            {"s": "COMPLETED"},
            driver,
        ),
        ("mutation ($id: ID!) { rateTrip(id: $id, rating: 4) { id } }", {}, rider),
    ]
    for query, extra, who in steps:
        body = await gql(client, query, {"id": trip["id"], **extra}, token=who.access)
        assert "errors" not in body, body


async def test_planned_queries_answer_as_the_full_path(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rider, driver = await account(client, "RIDER"), await account(client, "DRIVER")
    await completed_trip(client, rider, driver)
    await completed_trip(client, rider, driver)
    requested = await request_trip(client, rider, "Open")
    executor = endpoint(app).executor
    assert executor.plans
    answered: list[bool] = []
    original = Plan.run

    async def watched(
        self: Plan, context: Context, variables: dict[str, Any] | None
    ) -> ExecutionResult | None:
        result = await original(self, context, variables)
        answered.append(result is not None)
        return result

    monkeypatch.setattr(Plan, "run", watched)

    async def both(
        query: str, variables: dict[str, Any] | None, who: Account | None
    ) -> tuple[bool, Any]:
        headers = {"Authorization": f"Bearer {who.access}"} if who else {}
        payload = {"query": query, "variables": variables}
        answered.clear()
        fast = await client.post("/graphql", json=payload, headers=headers)
        planned = answered == [True]
        executor.plans = False
        try:
            full = await client.post("/graphql", json=payload, headers=headers)
        finally:
            executor.plans = True
        assert (fast.status_code, fast.json()) == (full.status_code, full.json()), query
        # The same headers either way.
        same = ("content-type", "cache-control", "x-request-id")
        assert [fast.headers.get(h) is None for h in same] == [
            full.headers.get(h) is None for h in same
        ], query
        assert fast.headers["content-type"] == full.headers["content-type"], query
        return planned, fast.json()

    first_page = await both(FIRST, {"n": 1}, rider)
    cursor = first_page[1]["data"]["trips"]["edges"][0]["cursor"]
    cases: list[tuple[str, dict[str, Any] | None, Account | None, bool]] = [
        # (document, variables, caller, answered by a plan)
        (TRIPS, None, rider, True),
        (TRIPS, None, driver, True),
        (ALIASES, None, rider, True),
        (FRAGMENTS, None, driver, True),
        (TYPENAMES, None, rider, True),
        (MERGED, None, rider, True),
        (STATUS, {"s": ["COMPLETED"]}, rider, True),
        (STATUS, {"s": None}, rider, True),
        (LITERAL_STATUS, None, driver, True),
        (FIRST, {"n": 1, "a": cursor}, rider, True),
        (FIRST, {"n": 0}, rider, True),
        (ONE, {"id": requested["id"]}, rider, True),
        (ONE, {"id": requested["id"]}, driver, True),  # in every driver's pool
        # Errors and what plans leave alone: the full path, with the same answer.
        (DIRECTIVES, {"x": True}, rider, False),
        (DIRECTIVES, {"x": False}, rider, False),
        (ONE, {"id": "not-a-trip"}, rider, False),
        (FIRST, {"n": 500}, rider, False),
        (FIRST, {"n": -1}, rider, False),
        (FIRST, {"n": "x"}, rider, False),
        (FIRST, {"a": "garbage"}, rider, False),
        (STATUS, {"s": ["NOPE"]}, rider, False),
        (TRIPS, None, None, False),
        (MIXED, None, rider, False),
        (UNKNOWN, None, rider, False),
        (TOO_MANY, None, rider, False),
    ]
    for query, variables, who, expected in cases:
        planned, body = await both(query, variables, who)
        assert planned is expected, (query, variables, body)

    # The page's own statement checks the token's session: an ended session, or a
    # deactivated user, is refused exactly as the full path refuses it.
    assert (await gql(client, LOG_OUT, {"r": rider.refresh}))["data"]["logOut"] is True
    services = app.state.services
    await sessions.deactivate_user(
        db=services.db,
        events=services.events,
        positions=services.positions,
        settings=services.settings,
        user_id=int(driver.id),
    )
    for who in (rider, driver):
        planned, body = await both(TRIPS, None, who)
        assert not planned, body
        assert error_code(body) == "UNAUTHENTICATED", body
