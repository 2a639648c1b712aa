"""Read-only queries answered without graphql-core's per-field execution.

A `trips` page is ~400 fields; graphql-core resolves and completes each one (a few
microseconds apiece), which cost more than the SQL. A query document whose root fields
are all in `ROOTS` and whose selections reach only plain attributes of the read models
(taxi/domain/readmodels.py: no resolver per field) is compiled once per document text into a
plan: per response key, the attribute to read and the schema's own serializer for it.
The document is parsed and validated as the full path does (the same limits);
aliases, fragments and __typename are part of the plan. Anything else (directives,
introspection, fields with resolvers below the root), and every error (bad variables,
unauthenticated, not found, an outage, a null where the schema says non-null), goes the
full way, which answers with the usual errors: this path changes nothing a client sees.
Read-only, so a query that falls back after reading is simply read again."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from enum import Enum
from typing import Any

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeNameMetaFieldDef,
    get_argument_values,
    get_variable_values,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    parse,
    specified_rules,
    validate,
)
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from strawberry.schema.types import base_scalars

from taxi.api.context import Context
from taxi.api.resolvers.trips import checked_trips_page, one_trip, trips_page
from taxi.api.schema.doccache import MAX_CACHED_CHARS
from taxi.api.schema.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, validation_rules
from taxi.core import metrics
from taxi.core.logs import operation_line
from taxi.domain.errors import AppError
from taxi.domain.models import TripStatus

# Distinct documents remembered (recognised or not).
MAX_PLANS = 256
# Strawberry's link from a graphql-core field to its own definition.
STRAWBERRY = "strawberry-definition"
# What a failed read raises: the full path reads again and reports it.
FAILED = (AppError, SQLAlchemyError, RedisError, OSError)


class Fallback(Exception):
    """Not answered here: the full path answers (with its errors)."""


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

Render = Callable[[Any], Any]


async def _typename(_ctx: Context, _args: dict[str, Any]) -> str:
    return "Query"  # the schema's query type (Strawberry's default name)


def _same(value: Any) -> Any:
    return value


class Plan:
    __slots__ = ("name", "operation", "roots")

    def __init__(self, name: str | None, operation: OperationDefinitionNode) -> None:
        self.name = name
        self.operation = operation
        # (response key, root resolver, its graphql-core field and node, render)
        self.roots: list[tuple[str, Root, GraphQLField, FieldNode, Render]] = []


class Plans:
    def __init__(self, core: GraphQLSchema, *, introspection: bool) -> None:
        self.core = core
        rules = [*specified_rules, *validation_rules(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self._rules = tuple(rules)
        self._plans: OrderedDict[str, Plan | None] = OrderedDict()

    def plan(self, query: str) -> Plan | None:
        if len(query) > MAX_CACHED_CHARS:
            return None  # never a recognised read; not a key to keep (doccache.py)
        if query in self._plans:
            self._plans.move_to_end(query)
            return self._plans[query]
        try:
            found = self._compile(query)
        except (GraphQLError, Fallback):
            found = None
        self._plans[query] = found
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return found

    def _compile(self, query: str) -> Plan | None:
        document = parse(query, max_tokens=MAX_TOKENS)
        if validate(self.core, document, self._rules):
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
            return None
        operation = operations[0]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        query_type = self.core.query_type
        assert query_type is not None
        plan = Plan(operation.name.value if operation.name else None, operation)
        for key, nodes in _collect(query_type.name, [operation.selection_set], fragments).items():
            name = nodes[0].name.value
            if name == "__typename":
                plan.roots.append((key, _typename, TypeNameMetaFieldDef, nodes[0], _same))
                continue
            root = ROOTS.get(name)
            if root is None or len(nodes) != 1 or operation.directives:
                return None
            field = query_type.fields[name]
            plan.roots.append((key, root, field, nodes[0], _render(field.type, nodes, fragments)))
        return plan

    async def answer(
        self,
        context: Context,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> dict[str, Any] | None:
        """The operation's result data, or None: then run it the full way."""
        if variables is not None and not isinstance(variables, dict):
            return None
        found = self.plan(query)
        if found is None or operation_name not in (None, found.name):
            return None
        started = time.perf_counter()
        coerced = get_variable_values(
            self.core, found.operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return None
        data: dict[str, Any] = {}
        try:
            for key, root, field, node, render in found.roots:
                args = get_argument_values(field, node, coerced)
                data[key] = render(await root(context, args))
        except (Fallback, GraphQLError, *FAILED):
            return None
        seconds = time.perf_counter() - started
        metrics.operation(name=found.name, kind="query", code="OK", seconds=seconds)
        operation_line(found.name, "query", seconds, [])
        return data


def _collect(
    type_name: str,
    selection_sets: Iterable[SelectionSetNode | None],
    fragments: dict[str, FragmentDefinitionNode],
) -> dict[str, list[FieldNode]]:
    """The fields of `selection_sets` by response key, in order, fragments spread (every
    type here is an object type: a fragment on another one never applies, and validation
    lets it appear only where it could)."""
    out: dict[str, list[FieldNode]] = {}
    for selection_set in selection_sets:
        for node in selection_set.selections if selection_set else ():
            if node.directives:
                raise Fallback  # @include / @skip: the full path
            if isinstance(node, FieldNode):
                key = node.alias.value if node.alias else node.name.value
                out.setdefault(key, []).append(node)
                continue
            if isinstance(node, FragmentSpreadNode):
                fragment: InlineFragmentNode | FragmentDefinitionNode = fragments[node.name.value]
            else:
                assert isinstance(node, InlineFragmentNode)
                fragment = node
            condition = fragment.type_condition
            if condition is not None and condition.name.value != type_name:
                raise Fallback
            if fragment.directives:
                raise Fallback
            for key, nodes in _collect(type_name, [fragment.selection_set], fragments).items():
                out.setdefault(key, []).extend(nodes)
    return out


def _render(
    kind: GraphQLOutputType, nodes: list[FieldNode], fragments: dict[str, FragmentDefinitionNode]
) -> Render:
    """How a value of GraphQL type `kind` is written, as graphql-core would complete it."""
    if is_non_null_type(kind):
        inner = _render(kind.of_type, nodes, fragments)

        def non_null(value: Any) -> Any:
            if value is None:
                raise Fallback  # graphql-core's error (and null parent): the full path
            return inner(value)

        return non_null
    if is_list_type(kind):
        item = _render(kind.of_type, nodes, fragments)
        return lambda value: None if value is None else [item(v) for v in value]
    if is_leaf_type(kind):
        serialize = kind.serialize

        def leaf(value: Any) -> Any:
            if value is None:
                return None
            try:
                out = serialize(value)
            except (GraphQLError, TypeError, ValueError) as exc:
                raise Fallback from exc
            if out is None:
                raise Fallback
            return out

        return leaf
    if is_object_type(kind):
        obj = _object(kind, nodes, fragments)
        return lambda value: None if value is None else obj(value)
    raise Fallback  # interfaces and unions: none are reachable from ROOTS today


def _object(
    kind: GraphQLObjectType, nodes: list[FieldNode], fragments: dict[str, FragmentDefinitionNode]
) -> Render:
    """One function per selection of an object type, written out as Python source (a
    page renders ~400 fields: a call per field and per wrapper cost more than the
    rest of the request); plain scalars are written inline (`_inline`), anything else
    through its `_render`."""
    names: dict[str, Any] = {"Fallback": Fallback}
    lines = ["def render(obj):", "    out = {}"]
    fields = _collect(kind.name, [n.selection_set for n in nodes], fragments)
    for i, (key, field_nodes) in enumerate(fields.items()):
        name = field_nodes[0].name.value
        if name == "__typename":
            lines.append(f"    out[{key!r}] = {kind.name!r}")
            continue
        field = kind.fields[name]
        definition = (field.extensions or {}).get(STRAWBERRY)
        if definition is None or definition.base_resolver is not None or field_nodes[0].arguments:
            raise Fallback  # a resolver's work: the full path
        attribute = definition.python_name
        if not attribute.isidentifier():
            raise Fallback
        names[f"r{i}"] = _render(field.type, field_nodes, fragments)
        lines.append(f"    v = obj.{attribute}")
        inline = _inline(field.type, i, names)
        lines.append(f"    out[{key!r}] = {inline + ' else ' if inline else ''}r{i}(v)")
    lines.append("    return out")
    exec("\n".join(lines), names)
    render: Render = names["render"]
    return lambda value: None if value is None else render(value)


def _inline(kind: GraphQLOutputType, i: int, names: dict[str, Any]) -> str | None:
    """An expression giving `v`'s output where graphql-core's serializer would give it
    unchanged (or by `str`), to be followed by `else` and the full render; None for
    other types. A non-null wrapper needs no test here: these values are not None."""
    named = kind.of_type if is_non_null_type(kind) else kind
    if named is GraphQLString:
        return "v if type(v) is str"
    if named is GraphQLID:
        names["UUID"] = uuid.UUID
        return "v if type(v) is str else str(v) if type(v) is int or type(v) is UUID"
    if named is GraphQLBoolean:
        return "v if type(v) is bool"
    if named is GraphQLInt:
        return f"v if type(v) is int and {GRAPHQL_MIN_INT} <= v <= {GRAPHQL_MAX_INT}"
    if named is GraphQLFloat:
        names["isfinite"] = math.isfinite
        return "v if type(v) is float and isfinite(v)"
    if isinstance(named, GraphQLScalarType) and named.serialize is base_scalars.isoformat:
        names["datetime"] = datetime
        return "v.isoformat() if type(v) is datetime"  # Strawberry's DateTime
    wrapped = getattr(named, "wrapped_cls", None)
    if (
        isinstance(named, GraphQLEnumType)
        and isinstance(wrapped, type)
        and issubclass(wrapped, Enum)
    ):
        # Strawberry's enum serializer, as a table: the GraphQL name of each member.
        names[f"c{i}"] = wrapped
        names[f"e{i}"] = {
            member: key
            for member in wrapped
            for key, value in named.values.items()
            if member.value == value.value
        }
        return f"e{i}[v] if type(v) is c{i} and v in e{i}"
    return None
