"""The schema, composed from its domains' resolvers, with its extensions and limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from taxi.api.resolvers.accounts import AccountMutation, AccountQuery
from taxi.api.resolvers.drivers import DriverMutation, DriverQuery
from taxi.api.resolvers.rides import RideMutation, RideQuery
from taxi.api.resolvers.subscriptions import Subscription
from taxi.api.resolvers.trips import TripMutation, TripQuery
from taxi.api.schema.doccache import BoundedParserCache, BoundedValidationCache
from taxi.api.schema.errors import ErrorCodes
from taxi.api.schema.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, validation_rules
from taxi.api.schema.observe import Observe
from taxi.api.schema.oplog import OperationLog

Query = merge_types("Query", (AccountQuery, TripQuery, DriverQuery, RideQuery))
Mutation = merge_types("Mutation", (AccountMutation, TripMutation, DriverMutation, RideMutation))


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs what deserves logging; expected domain errors are not noise.
        return None


def build_schema(
    *, mask_internal: bool = False, introspection: bool = True, tracer: Any = None
) -> strawberry.Schema:
    rules = validation_rules(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        OperationLog,
        lambda: Observe(tracer=tracer),
        lambda: ErrorCodes(mask_internal=mask_internal),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(rules),
        lambda: BoundedParserCache(maxsize=1024),
        lambda: BoundedValidationCache(maxsize=1024),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
    )


def print_schema() -> str:
    return build_schema().as_str() + "\n"
