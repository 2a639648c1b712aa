"""The driver's position report, answered by a direct handler instead of graphql-core's
execution.

`updatePosition` is the one operation a city sends thousands of times a second (every
driver every 2-4 s), and a graphql-core execution costs several times the report
itself. An operation that is exactly (after validation, so every name and type is
already known to be right)

    mutation ($p: LocationInput!) { updatePosition(position: $p) { <fields of DriverState> } }

(any names and aliases; plain fields only) is answered here: the variable checked as
graphql-core would coerce it (anything doubtful is declined before the report is
stored, and graphql-core answers it with its own errors), the same rule called, the
same result shape written; an error of the rule is answered here too, located on the
field as graphql-core locates it, so nothing ever runs twice."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

from graphql import (
    ExecutionResult,
    FieldNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    located_error,
)
from redis.exceptions import RedisError

from taxi.api.context import Context
from taxi.api.strategies.render import iso
from taxi.domain.errors import AppError
from taxi.domain.services import drivers

INPUT_KEYS = {"latitude", "longitude", "heading"}
# What a report may fail with, answered as the field's error (anything else is a bug).
ERRORS = (AppError, RedisError, OSError)
# (response key, field name, sub-selection of `position` or None)
Selection = tuple[tuple[str, str, "Selection | None"], ...]


class PositionReport:
    __slots__ = ("fields", "key", "name", "node", "variable")
    kind = "mutation"

    def __init__(
        self, node: FieldNode, variable: str, fields: Selection, *, name: str | None = None
    ) -> None:
        self.name = name  # the operation's own name, if it has one
        self.node = node  # updatePosition's field, where its errors are located
        self.key = node.alias.value if node.alias else node.name.value
        self.variable = variable
        self.fields = fields

    @classmethod
    def recognise(cls, operation: OperationDefinitionNode) -> PositionReport | None:
        if operation.operation is not OperationType.MUTATION or operation.directives:
            return None
        definitions = operation.variable_definitions or ()
        selections = operation.selection_set.selections
        if len(definitions) != 1 or len(selections) != 1:
            return None
        var, root = definitions[0], selections[0]
        kind = var.type
        if (
            var.default_value is not None
            or not isinstance(kind, NonNullTypeNode)
            or not isinstance(kind.type, NamedTypeNode)
            or kind.type.name.value != "LocationInput"
        ):
            return None
        if not _plain(root) or root.name.value != "updatePosition":
            return None
        arguments = root.arguments or ()
        if len(arguments) != 1:
            return None
        value = arguments[0].value
        if not isinstance(value, VariableNode) or value.name.value != var.variable.name.value:
            return None
        fields = _fields(root.selection_set)
        if fields is None:
            return None
        name = operation.name.value if operation.name else None
        return cls(root, value.name.value, fields, name=name)

    async def run(
        self, context: Context, variables: dict[str, Any] | None
    ) -> ExecutionResult | None:
        position = _position((variables or {}).get(self.variable))
        if position is None:
            return None  # graphql-core coerces it, and says what is wrong
        try:
            user = await context.user()
            state = await drivers.update_position(
                reports=context.services.reports,
                user=user,
                latitude=position[0],
                longitude=position[1],
                heading=position[2],
            )
        except ERRORS as exc:
            return self._failed(exc)
        return self._answer(state)

    def submit(
        self,
        context: Context,
        variables: dict[str, Any] | None,
        done: Callable[[ExecutionResult | None], None],
    ) -> bool:
        """`run` without a task or an await: `done` gets the result when the report's
        batch is through (None: the process is shutting down, nothing to answer). False:
        nothing happened (the input is graphql-core's to judge, or the user is not known
        yet), `run` it."""
        if not isinstance(variables, dict) or len(variables) != 1:
            return False  # the executor's checks of other variables apply: `run` it
        position = _position(variables.get(self.variable))
        user = context.known_user()
        if position is None or user is None:
            return False

        def answered(state: drivers.StateView | None, error: BaseException | None) -> None:
            if state is not None:
                done(self._answer(state))
            elif isinstance(error, Exception):
                # The store's errors as run answers them; a bug among them is logged and
                # masked by the executor's error codes, as a failing resolver's is.
                done(self._failed(error))
            else:
                done(None)

        try:
            drivers.submit_position(
                reports=context.services.reports,
                user=user,
                latitude=position[0],
                longitude=position[1],
                heading=position[2],
                done=answered,
            )
        except ERRORS as exc:
            done(self._failed(exc))
        return True

    def _failed(self, exc: Exception) -> ExecutionResult:
        # As graphql-core reports a resolver's error on a non-null root field.
        return ExecutionResult(None, [located_error(exc, [self.node], [self.key])])

    def _answer(self, state: drivers.StateView) -> ExecutionResult:
        where = state.position
        obj = {
            "availability": state.availability.name,
            "position": None
            if where is None
            else {
                "latitude": where.latitude,
                "longitude": where.longitude,
                "heading": where.heading,
                "recordedAt": iso(where.recorded_at),
            },
        }
        return ExecutionResult({self.key: _render(self.fields, obj, "DriverState")})


def _plain(node: object) -> TypeGuard[FieldNode]:
    return isinstance(node, FieldNode) and not node.directives


def _fields(selection_set: SelectionSetNode | None) -> Selection | None:
    """Plain fields only (validation vouched for their names); `position`'s own plain
    fields below it. Fragments and directives: None (graphql-core's work)."""
    if selection_set is None:
        return None
    out: list[tuple[str, str, Selection | None]] = []
    for node in selection_set.selections:
        if not _plain(node):
            return None
        name = node.name.value
        sub = None
        if node.selection_set is not None:
            sub = _fields(node.selection_set)
            if sub is None or any(inner is not None for _, _, inner in sub):
                return None
        out.append((node.alias.value if node.alias else name, name, sub))
    return tuple(out)


def _float(value: object) -> float | None:
    """GraphQL Float input coercion: numbers (JSON ints too), never booleans."""
    if type(value) is float:  # nearly every coordinate: the tests below are for the rest
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a double's range
        return None
    return number if math.isfinite(number) else None


def _position(value: object) -> tuple[float, float, float | None] | None:
    if not isinstance(value, dict) or not value.keys() <= INPUT_KEYS:
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
