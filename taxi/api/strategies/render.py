"""How a compiled plan (reads.py) renders the read models: per selection of an object
type, one function written out as Python source, each value written as graphql-core
would complete it, with the schema's own serializers; anything a plan cannot render
raises Fallback (graphql-core's execution then answers)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    InlineFragmentNode,
    SelectionSetNode,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)

from taxi.api.strawberry_adapter import enum_class, is_datetime, plain_attribute

Render = Callable[[Any], Any]


def iso(value: datetime) -> str:
    """`value.isoformat()`, as Strawberry's DateTime serializes it, written by orjson's C:
    0.5 µs against 2.8 here, and a report's answer and every driverLocation frame carry
    one. The same text for every datetime (naive or with an offset in whole minutes; this
    service holds UTC ones): tests/test_live_plans.py compares the bytes with
    graphql-core's, tests/test_fastpath.py the answers."""
    return orjson.dumps(value)[1:-1].decode()


class Fallback(Exception):
    """Not answered by a plan: graphql-core's execution answers (with its errors)."""


def collect(
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
                raise Fallback  # @include / @skip: graphql-core's
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
            for key, nodes in collect(type_name, [fragment.selection_set], fragments).items():
                out.setdefault(key, []).extend(nodes)
    return out


def renderer(
    kind: GraphQLOutputType, nodes: list[FieldNode], fragments: dict[str, FragmentDefinitionNode]
) -> Render:
    """How a value of GraphQL type `kind` is written, as graphql-core would complete it."""
    if is_non_null_type(kind):
        inner = renderer(kind.of_type, nodes, fragments)

        def non_null(value: Any) -> Any:
            if value is None:
                raise Fallback  # graphql-core's error (and null parent): its execution
            return inner(value)

        return non_null
    if is_list_type(kind):
        item = renderer(kind.of_type, nodes, fragments)
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
    through its `renderer`."""
    names: dict[str, Any] = {"Fallback": Fallback}
    lines = ["def render(obj):", "    out = {}"]
    fields = collect(kind.name, [n.selection_set for n in nodes], fragments)
    for i, (key, field_nodes) in enumerate(fields.items()):
        name = field_nodes[0].name.value
        if name == "__typename":
            lines.append(f"    out[{key!r}] = {kind.name!r}")
            continue
        field = kind.fields[name]
        attribute = plain_attribute(field)
        if attribute is None or field_nodes[0].arguments:
            raise Fallback  # a resolver's work: graphql-core's
        names[f"r{i}"] = renderer(field.type, field_nodes, fragments)
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
    if is_datetime(named):
        names["datetime"], names["iso"] = datetime, iso
        return "iso(v) if type(v) is datetime"  # Strawberry's DateTime
    wrapped = enum_class(named)
    if isinstance(named, GraphQLEnumType) and wrapped is not None:
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
