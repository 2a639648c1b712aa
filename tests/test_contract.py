"""The served schema against the contract, and the committed schema.graphql against code."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    build_schema,
    extend_schema,
    parse,
    print_ast,
)
from graphql.utilities import ast_from_value

from taxi.api.build import build_schema as build_taxi_schema
from taxi.api.build import print_schema

ROOT = Path(__file__).resolve().parents[1]
# The repository's own copy of the contract (api/README.md); `make contract` refreshes it.
CONTRACT = ROOT / "api" / "schema.graphql"
# Its dispatch additions, written as `extend` of schema.graphql: served together with it.
DISPATCH = ROOT / "api" / "dispatch.graphql"
# Fares and the ride's life, extending both.
RIDES = ROOT / "api" / "rides.graphql"


def _default(arg: GraphQLField | GraphQLArgument | GraphQLInputField) -> str | None:
    """The default as printed GraphQL; SDL-built schemas keep it as the AST node."""
    if isinstance(arg, GraphQLField):
        return None  # an output field has none
    if arg.ast_node is not None and arg.ast_node.default_value is not None:
        return print_ast(arg.ast_node.default_value)
    if arg.default_value is Undefined:
        return None
    node = ast_from_value(arg.default_value, arg.type)
    return print_ast(node) if node else None


def differences(contract: GraphQLSchema, served: GraphQLSchema) -> list[str]:
    """Every contract element the server lacks or serves differently."""
    out: list[str] = []
    for name, want in contract.type_map.items():
        if name.startswith("__"):
            continue
        have = served.type_map.get(name)
        if have is None:
            out.append(f"type {name}: missing")
            continue
        kinds = (GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, GraphQLScalarType)
        if not any(isinstance(want, k) and isinstance(have, k) for k in kinds):
            out.append(f"type {name}: is {type(have).__name__}, want {type(want).__name__}")
            continue
        if isinstance(want, GraphQLEnumType):
            assert isinstance(have, GraphQLEnumType)
            for value in sorted(set(want.values) - set(have.values)):
                out.append(f"enum {name}.{value}: missing")
        elif isinstance(want, (GraphQLObjectType, GraphQLInputObjectType)):
            assert isinstance(have, (GraphQLObjectType, GraphQLInputObjectType))
            for fname, wfield in want.fields.items():
                hfield = have.fields.get(fname)
                where = f"{name}.{fname}"
                if hfield is None:
                    out.append(f"{where}: missing")
                    continue
                if str(hfield.type) != str(wfield.type):
                    out.append(f"{where}: type {hfield.type}, want {wfield.type}")
                if _default(hfield) != _default(wfield):
                    out.append(f"{where}: default {_default(hfield)}, want {_default(wfield)}")
                for aname, warg in getattr(wfield, "args", {}).items():
                    harg = hfield.args.get(aname)
                    if harg is None:
                        out.append(f"{where}({aname}): missing")
                    elif str(harg.type) != str(warg.type):
                        out.append(f"{where}({aname}): type {harg.type}, want {warg.type}")
                    elif _default(harg) != _default(warg):
                        out.append(
                            f"{where}({aname}): default {_default(harg)}, want {_default(warg)}"
                        )
                for aname, harg in getattr(hfield, "args", {}).items():
                    # An added argument must not break existing clients.
                    if aname not in getattr(wfield, "args", {}) and str(harg.type).endswith("!"):
                        if harg.default_value is None:
                            out.append(f"{where}({aname}): added as required")
        elif isinstance(want, GraphQLScalarType):
            pass
    return out


@pytest.fixture(scope="module")
def contract() -> GraphQLSchema:
    for path in (CONTRACT, DISPATCH, RIDES):
        if not path.exists():
            pytest.fail(f"the contract is missing: {path}")
    schema = build_schema(CONTRACT.read_text())
    for extension in (DISPATCH, RIDES):
        schema = extend_schema(schema, parse(extension.read_text()))
    return schema


def test_dispatch_additions_are_part_of_the_contract(contract: GraphQLSchema) -> None:
    """The extension really extended: a served schema without dispatch would differ."""
    trip = contract.type_map["Trip"]
    assert isinstance(trip, GraphQLObjectType) and "pickUp" in trip.fields
    assert "DriverAvailability" in contract.type_map
    base = build_schema(CONTRACT.read_text())
    assert "type Point: missing" in differences(contract, base)


def test_rides_additions_are_part_of_the_contract(contract: GraphQLSchema) -> None:
    """rides.graphql extended both files: without it the served schema would differ."""
    trip = contract.type_map["Trip"]
    assert isinstance(trip, GraphQLObjectType) and "fare" in trip.fields
    nearby = contract.type_map["NearbyCar"]
    assert isinstance(nearby, GraphQLObjectType) and "etaSeconds" in nearby.fields
    without = extend_schema(build_schema(CONTRACT.read_text()), parse(DISPATCH.read_text()))
    found = differences(contract, without)
    assert "type FareQuote: missing" in found
    assert "Mutation.releaseTrip: missing" in found
    assert "RequestTripInput.quoteId: missing" in found


def test_every_contract_element_is_served_exactly(contract: GraphQLSchema) -> None:
    served = build_taxi_schema()._schema
    missing = differences(contract, served)
    assert missing == [], "\n".join(missing)


def test_the_comparison_notices_a_change(contract: GraphQLSchema) -> None:
    """The checker itself: a renamed field, a lost enum value, a changed default."""
    text = CONTRACT.read_text()
    drifted = build_schema(
        text.replace("pickUpAddress: String!\n  dropOffAddress", "pickUp: String!\n  x", 1)
        .replace("  CANCELED\n", "", 1)
        .replace("first: Int = 20", "first: Int = 10", 1)
    )
    found = differences(contract, drifted)
    assert "Trip.pickUpAddress: missing" in found
    assert "enum TripStatus.CANCELED: missing" in found
    assert "Query.trips(first): default 10, want 20" in found


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == print_schema(), "schema.graphql is stale: run `make schema`"
