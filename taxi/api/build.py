"""The schema, composed from its domains' resolvers. Its documents' limits, errors,
metrics, log lines and spans are the executor's (taxi/api/executor.py): the service
never runs Strawberry's own `execute`, so the schema carries no extensions."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from taxi.api.resolvers.accounts import AccountMutation, AccountQuery
from taxi.api.resolvers.drivers import DriverMutation, DriverQuery
from taxi.api.resolvers.rides import RideMutation, RideQuery
from taxi.api.resolvers.subscriptions import Subscription
from taxi.api.resolvers.trips import TripMutation, TripQuery

Query = merge_types("Query", (AccountQuery, TripQuery, DriverQuery, RideQuery))
Mutation = merge_types("Mutation", (AccountMutation, TripMutation, DriverMutation, RideMutation))


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def print_schema() -> str:
    return build_schema().as_str() + "\n"
