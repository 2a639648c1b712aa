"""What taxi/api/strawberry_adapter.py takes from Strawberry beyond its documented API
still works: these fail when an upgrade moves those internals (embedded backend only,
so `make test` on a laptop notices)."""

from __future__ import annotations

import asyncio

import httpx
from graphql import GraphQLObjectType, GraphQLSchema, get_named_type

from taxi.api.build import build_schema
from taxi.api.strawberry_adapter import (
    core_schema,
    enum_class,
    is_awaitable,
    is_datetime,
    plain_attribute,
)
from taxi.domain.models import TripStatus


def test_schema_internals() -> None:
    core = core_schema(build_schema())
    assert isinstance(core, GraphQLSchema)
    trip = core.type_map["Trip"]
    assert isinstance(trip, GraphQLObjectType)
    # A plain attribute of the read model, and a field whose resolver does work.
    assert plain_attribute(trip.fields["pickUpAddress"]) == "pick_up_address"
    assert plain_attribute(core.query_type.fields["trips"]) is None  # type: ignore[union-attr]
    assert is_datetime(get_named_type(trip.fields["created"].type))
    assert not is_datetime(get_named_type(trip.fields["pickUpAddress"].type))
    assert enum_class(get_named_type(trip.fields["status"].type)) is TripStatus
    assert enum_class(get_named_type(trip.fields["pickUpAddress"].type)) is None


async def test_awaitable_check() -> None:
    async def nothing() -> None:
        return None

    coroutine, future = nothing(), asyncio.get_running_loop().create_future()
    assert is_awaitable(coroutine) and is_awaitable(future)
    assert not is_awaitable(1) and not is_awaitable("x")
    await coroutine
    future.cancel()


async def test_the_views_execution_hook(client: httpx.AsyncClient) -> None:
    """A GET goes through Strawberry's view, whose `execute_single` keyword arguments
    the adapter reads, into the executor."""
    response = await client.get("/graphql", params={"query": "query Q { __typename }"})
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}
    mutation = await client.get("/graphql", params={"query": "mutation { __typename }"})
    assert mutation.status_code == 400, mutation.text
    assert mutation.json()["errors"][0]["message"] == "mutations are not allowed when using GET"
