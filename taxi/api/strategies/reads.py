"""Read-only queries answered by a compiled plan, without graphql-core's per-field
execution.

A `trips` page is ~400 fields; graphql-core resolves and completes each one (a few
microseconds apiece), which cost more than the SQL. An operation whose root fields are
all in `ROOTS` and whose selections reach only plain attributes of the read models
(taxi/domain/readmodels.py: no resolver per field) is compiled once per document (the
executor keeps it with the prepared document) into a plan: per response key, the
attribute to read and the schema's own serializer for it. Aliases, fragments and
__typename are part of the plan. Anything else (directives, introspection, fields with
resolvers below the root) is not a plan, and every error (bad variables,
unauthenticated, not found, an outage, a null where the schema says non-null) makes the
plan decline: graphql-core's execution then answers with the usual errors, so a plan
changes nothing a client sees. Read-only, so a query that declines after reading is
simply read again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeNameMetaFieldDef,
    get_argument_values,
    get_variable_values,
)
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from taxi.api.context import Context
from taxi.api.resolvers.trips import checked_trips_page, one_trip, trips_page
from taxi.api.strategies.render import Fallback, Render, collect, renderer
from taxi.domain.errors import AppError
from taxi.domain.models import TripStatus

# What a failed read raises: graphql-core's execution reads again and reports it.
FAILED = (AppError, SQLAlchemyError, RedisError, OSError)


Root = Callable[[Context, dict[str, Any]], Awaitable[object]]


def _status(args: dict[str, Any]) -> list[TripStatus] | None:
    # graphql-core coerces an enum to its GraphQL value; Strawberry then makes it a member.
    status = args.get("status")
    return None if status is None else [TripStatus(s) for s in status]


async def _trips(ctx: Context, args: dict[str, Any]) -> object:
    status, first, after = _status(args), args.get("first"), args.get("after")
    checked = await checked_trips_page(ctx, status=status, first=first, after=after)
    if checked is not None:
        return checked
    return await trips_page(ctx, status=status, first=first, after=after)


ROOTS: dict[str, Root] = {
    "trips": _trips,
    "trip": lambda ctx, a: one_trip(ctx, a["id"]),
}


async def _typename(_ctx: Context, _args: dict[str, Any]) -> str:
    return "Query"  # the schema's query type (Strawberry's default name)


def _same(value: Any) -> Any:
    return value


class Plan:
    """One recognised read-only operation, compiled."""

    __slots__ = ("core", "operation", "roots")
    kind = "query"

    def __init__(self, core: GraphQLSchema, operation: OperationDefinitionNode) -> None:
        self.core = core
        self.operation = operation
        # (response key, root resolver, its graphql-core field and node, render)
        self.roots: list[tuple[str, Root, GraphQLField, FieldNode, Render]] = []

    @classmethod
    def compile(
        cls, core: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> Plan | None:
        if operation.operation is not OperationType.QUERY or operation.directives:
            return None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        query_type = core.query_type
        assert query_type is not None
        plan = cls(core, operation)
        try:
            selected = collect(query_type.name, [operation.selection_set], fragments)
            for key, nodes in selected.items():
                name = nodes[0].name.value
                if name == "__typename":
                    plan.roots.append((key, _typename, TypeNameMetaFieldDef, nodes[0], _same))
                    continue
                root = ROOTS.get(name)
                if root is None or len(nodes) != 1:
                    return None
                field = query_type.fields[name]
                render = renderer(field.type, nodes, fragments)
                plan.roots.append((key, root, field, nodes[0], render))
        except Fallback:
            return None
        return plan

    async def run(
        self, context: Context, variables: dict[str, Any] | None
    ) -> ExecutionResult | None:
        """The operation's result, or None: then graphql-core's execution answers."""
        coerced = get_variable_values(
            self.core, self.operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return None
        data: dict[str, Any] = {}
        try:
            for key, root, field, node, render in self.roots:
                args = get_argument_values(field, node, coerced)
                data[key] = render(await root(context, args))
        except (Fallback, GraphQLError, *FAILED):
            return None
        return ExecutionResult(data)
