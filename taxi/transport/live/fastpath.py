"""The driver's position report over a socket, without a GraphQL execution.

`updatePosition` is the one operation a city sends thousands of times a second (every
driver every 2-4 s). A full Strawberry operation costs ~1 ms of CPU, ten times the
report itself (bench/rush.py's profile: parse cache, extensions, executor, argument
conversion). A document that is exactly

    mutation ($p: LocationInput!) { updatePosition(position: $p) { <fields of DriverState> } }

(any names and aliases; plain fields only) is recognised once per document text and
then answered here: the variables checked as GraphQL would coerce them, the same
resolver called, the same result shape written, the same log line and metrics (no
OpenTelemetry operation span: the store's Redis span stands alone). Anything else, and
every error (bad input, offline, not a driver, an outage: none stores anything), goes
the full way, which answers with the usual error format; so this path changes nothing a
client can see."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypeGuard

from graphql import (
    FieldNode,
    GraphQLError,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
)
from redis.exceptions import RedisError

from taxi.api.context import Context
from taxi.api.schema.doccache import MAX_CACHED_CHARS
from taxi.core import metrics
from taxi.core.logs import operation_line
from taxi.domain.errors import AppError
from taxi.domain.services import drivers

# Distinct documents remembered (a client sends one; a few versions of an app, a few).
MAX_PLANS = 256
# More fields than this is not a document an app sends: the full path (with its limits).
MAX_FIELDS = 12
STATE_FIELDS = {"availability", "position", "__typename"}
LOCATION_FIELDS = {"latitude", "longitude", "heading", "recordedAt", "__typename"}
INPUT_KEYS = {"latitude", "longitude", "heading"}

# (response key, field name, sub-selection of position or None)
Selection = tuple[tuple[str, str, "Selection | None"], ...]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str | None  # the operation's name
    variable: str
    key: str  # updatePosition's response key
    fields: Selection


_plans: OrderedDict[str, Plan | None] = OrderedDict()


def plan(query: str) -> Plan | None:
    if len(query) > MAX_CACHED_CHARS:
        return None  # never a position report; not a key to keep (doccache.py)
    if query in _plans:
        _plans.move_to_end(query)
        return _plans[query]
    try:
        found = _plan(query)
    except GraphQLError:
        found = None
    _plans[query] = found
    if len(_plans) > MAX_PLANS:
        _plans.popitem(last=False)
    return found


def _plan(query: str) -> Plan | None:
    doc = parse(query, no_location=True, max_tokens=200)
    if len(doc.definitions) != 1:
        return None
    op = doc.definitions[0]
    if not isinstance(op, OperationDefinitionNode) or op.operation is not OperationType.MUTATION:
        return None
    if op.directives or len(op.variable_definitions or ()) != 1:
        return None
    var = (op.variable_definitions or ())[0]
    kind = var.type
    if (
        var.default_value is not None
        or var.directives
        or not isinstance(kind, NonNullTypeNode)
        or not isinstance(kind.type, NamedTypeNode)
        or kind.type.name.value != "LocationInput"
    ):
        return None
    if len(op.selection_set.selections) != 1:
        return None
    root = op.selection_set.selections[0]
    if not _plain(root) or root.name.value != "updatePosition":
        return None
    arguments = root.arguments or ()
    if len(arguments) != 1:
        return None
    arg = arguments[0]
    value = arg.value
    if arg.name.value != "position" or not isinstance(value, VariableNode):
        return None
    if value.name.value != var.variable.name.value:
        return None
    fields = _fields(root.selection_set, STATE_FIELDS, nested=True)
    if fields is None or _count(fields) > MAX_FIELDS:
        return None
    key = root.alias.value if root.alias else root.name.value
    return Plan(op.name.value if op.name else None, var.variable.name.value, key, fields)


def _plain(node: Any) -> TypeGuard[FieldNode]:
    return isinstance(node, FieldNode) and not node.directives


def _fields(sel: SelectionSetNode | None, allowed: set[str], *, nested: bool) -> Selection | None:
    if sel is None:
        return None
    out = []
    keys: dict[str, str] = {}
    for node in sel.selections:
        if not _plain(node) or node.arguments or node.name.value not in allowed:
            return None
        name = node.name.value
        key = node.alias.value if node.alias else name
        if keys.setdefault(key, name) != name:
            return None  # one key for two fields: a validation error, the full path says so
        sub = None
        if name == "position" and nested:
            sub = _fields(node.selection_set, LOCATION_FIELDS, nested=False)
            if sub is None:
                return None
        elif node.selection_set is not None:
            return None
        out.append((key, name, sub))
    return tuple(out) if out else None


def _count(fields: Selection) -> int:
    return sum(1 + (_count(sub) if sub else 0) for _, _, sub in fields)


def _float(value: object) -> float | None:
    """GraphQL Float input coercion: numbers (JSON ints too), never booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _position(
    variables: dict[str, Any] | None, name: str
) -> tuple[float, float, float | None] | None:
    value = (variables or {}).get(name)
    if not isinstance(value, dict) or not set(value) <= INPUT_KEYS:
        return None
    latitude, longitude = _float(value.get("latitude")), _float(value.get("longitude"))
    heading = value.get("heading")
    if latitude is None or longitude is None:
        return None
    if heading is not None and (heading := _float(heading)) is None:
        return None
    return latitude, longitude, heading


def _render(fields: Selection, obj: dict[str, Any], typename: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name, sub in fields:
        if name == "__typename":
            out[key] = typename
        elif sub is not None:
            value = obj[name]
            out[key] = None if value is None else _render(sub, value, "Location")
        else:
            out[key] = obj[name]
    return out


async def answer(
    context: Context, query: str, variables: dict[str, Any] | None, operation_name: str | None
) -> dict[str, Any] | None:
    """The operation's result data, or None: then run it the full way."""
    found = plan(query) if query else None
    if found is None or operation_name not in (None, found.name):
        return None
    position = _position(variables, found.variable)
    if position is None:
        return None
    started = time.perf_counter()
    try:
        user = await context.user()
        state = await drivers.update_position(
            reports=context.services.reports,
            user=user,
            latitude=position[0],
            longitude=position[1],
            heading=position[2],
        )
    except (AppError, RedisError, OSError):
        return None  # nothing was stored; the full path answers with the error
    where = state.position
    obj = {
        "availability": state.availability.name,
        "position": None
        if where is None
        else {
            "latitude": where.latitude,
            "longitude": where.longitude,
            "heading": where.heading,
            "recordedAt": where.recorded_at.isoformat(),
        },
    }
    data = {found.key: _render(found.fields, obj, "DriverState")}
    seconds = time.perf_counter() - started
    metrics.operation(name=found.name, kind="mutation", code="OK", seconds=seconds)
    operation_line(found.name, "mutation", seconds, [])
    return data
