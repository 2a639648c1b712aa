"""Every use of Strawberry's undocumented names, in one place (strawberry-graphql is
bounded in pyproject.toml; tests/test_strawberry_adapter.py fails when these move).

What the rest of the service takes from Strawberry through here: the graphql-core schema
it builds, the serializer and enum class behind its scalars and enums, the link from a
graphql-core field to Strawberry's definition, its faster awaitable check, and its ASGI
view's `execute_single` hook (whose keyword arguments are not a documented API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeGuard, cast

import strawberry
from graphql import ExecutionResult, GraphQLField, GraphQLSchema
from starlette.requests import Request
from strawberry.asgi import GraphQL
from strawberry.execution import optimized_is_awaitable
from strawberry.http import GraphQLRequestData
from strawberry.schema.types import base_scalars

from taxi.api.context import Context

# Strawberry's key, in a graphql-core field's `extensions`, of its own field definition.
_DEFINITION = "strawberry-definition"

# graphql-core's `is_awaitable` without its slow path (called for every field resolved).
is_awaitable = cast(Callable[[Any], TypeGuard[Awaitable[Any]]], optimized_is_awaitable)


def core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built (its docs point to `_schema` for interop)."""
    core: GraphQLSchema = schema._schema
    return core


def plain_attribute(field: GraphQLField) -> str | None:
    """The Python attribute a field reads when it has no resolver and no arguments of
    its own; None when a resolver does work there."""
    definition = (field.extensions or {}).get(_DEFINITION)
    if definition is None or definition.base_resolver is not None:
        return None
    name = definition.python_name
    return name if isinstance(name, str) and name.isidentifier() else None


def is_datetime(named: object) -> bool:
    """Strawberry's DateTime scalar: serialized by `datetime.isoformat`."""
    return getattr(named, "serialize", None) is base_scalars.isoformat


def enum_class(named: object) -> type[Enum] | None:
    """The Python Enum behind a Strawberry enum type."""
    wrapped = getattr(named, "wrapped_cls", None)
    return wrapped if isinstance(wrapped, type) and issubclass(wrapped, Enum) else None


@dataclass(frozen=True, slots=True)
class ViewOperation:
    """One operation as Strawberry's view parsed it."""

    request: Request
    method: str
    data: GraphQLRequestData
    context: Context
    sub_response: Any  # the view's response-to-be: status and headers are set on it


class View(GraphQL[Context, None]):
    """Strawberry's ASGI view, with its one execution hook handed to `operation`: the
    view parses GET query strings, multipart uploads and batches; the operation itself
    runs in the service's executor (taxi/api/executor.py)."""

    async def operation(self, op: ViewOperation) -> ExecutionResult:
        raise NotImplementedError

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        op = ViewOperation(
            request=kwargs["request"],
            method=kwargs["request_adapter"].method,
            data=kwargs["request_data"],
            context=kwargs["context"],
            sub_response=kwargs["sub_response"],
        )
        return await self.operation(op)
