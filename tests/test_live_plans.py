"""A subscription's events rendered by a compiled plan (taxi/api/strategies/live.py) are
byte for byte what graphql-core's execution of the same event gives, for every shape a
client may send; selections a plan cannot render take graphql-core's path."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse

from taxi.api.build import build_schema
from taxi.api.strategies.live import LiveQuery
from taxi.api.strawberry_adapter import core_schema
from taxi.domain.models import CancelReason, TripStatus, UserGroup
from taxi.domain.readmodels import FareView, LocationView, MoneyView, PointView, TripView, UserView

AT = datetime(2026, 12, 5, 13, 30, 1, 123456, tzinfo=UTC)
CAR = LocationView(latitude=52.5, longitude=13.4, heading=None, recorded_at=AT, eta_seconds=75)
DRIVER = UserView(
    id=7,
    username="dora",
    first_name="Dora",
    last_name="Driver",
    group=UserGroup.DRIVER,
    photo_url=None,
    rating=4.5,
)
TRIP = TripView(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    created=AT,
    updated=AT,
    pick_up_address="Flood street 1",
    drop_off_address="Calm avenue 2",
    status=TripStatus.STARTED,
    rider=None,
    driver=DRIVER,
    driver_location=CAR,
    rating=None,
    pick_up=PointView(latitude=52.5, longitude=13.4),
    fare=FareView(
        quoted=MoneyView(amount=1250, currency="EUR"),
        final=None,
        distance_meters=None,
        duration_seconds=None,
        surge=1.2,
    ),
    cancel_reason=CancelReason.RIDER_NO_SHOW,
    pick_up_eta_seconds=120,
)
TRIP_FIELDS = """id created updated pickUpAddress dropOffAddress status rating
  rider { id } driver { id username firstName group photoUrl rating }
  driverLocation { latitude longitude heading recordedAt etaSeconds }
  pickUp { latitude longitude } dropOff { latitude }
  fare { quoted { amount currency } final { amount } surge distanceMeters }
  cancelReason arrivedAt pickUpEtaSeconds dropOffEtaSeconds"""

LOCATION = "subscription ($t: ID!) { driverLocation(tripId: $t) { latitude } }"
EVERY_LOCATION_FIELD = """subscription ($t: ID!) { car: driverLocation(tripId: $t) {
  __typename latitude lng: longitude heading recordedAt etaSeconds } }"""
TRIP_UPDATED = f"subscription ($id: ID!) {{ tripUpdated(id: $id) {{ {TRIP_FIELDS} }} }}"
FRAGMENTS = """fragment L on Location { latitude recordedAt }
subscription ($t: ID!) { driverLocation(tripId: $t) { ...L ... on Location { heading } } }"""
DIRECTIVE = """subscription ($t: ID!, $x: Boolean!) {
  driverLocation(tripId: $t) { latitude @include(if: $x) } }"""

CASES: list[tuple[str, dict[str, Any], object, bool]] = [
    # document, variables, event, rendered by a plan
    (LOCATION, {"t": "1"}, CAR, True),
    (EVERY_LOCATION_FIELD, {"t": "1"}, CAR, True),
    (EVERY_LOCATION_FIELD, {"t": "1"}, replace(CAR, heading=90.0, eta_seconds=None), True),
    (FRAGMENTS, {"t": "1"}, CAR, True),
    (TRIP_UPDATED, {"id": "1"}, TRIP, True),
    (
        TRIP_UPDATED,
        {"id": "1"},
        replace(TRIP, driver=None, driver_location=None, fare=None, cancel_reason=None),
        True,
    ),
    (DIRECTIVE, {"t": "1", "x": True}, CAR, False),
]


def _query(document: str, variables: dict[str, Any], *, plans: bool) -> LiveQuery:
    core = core_schema(build_schema())
    parsed = parse(document)
    (operation,) = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    return LiveQuery(core, parsed, operation, variables, plans=plans)


@pytest.mark.parametrize(("document", "variables", "event", "planned"), CASES)
def test_a_planned_event_is_what_graphql_core_gives(
    document: str, variables: dict[str, Any], event: object, planned: bool
) -> None:
    fast = _query(document, variables, plans=True)
    full = _query(document, variables, plans=False)
    assert (fast._compiled is not None) is planned
    assert fast.payload(event, mask_internal=True) == full.payload(event, mask_internal=True)


def test_a_value_the_plan_cannot_render_takes_graphql_cores_path() -> None:
    """A null where the schema says non-null: graphql-core's error, not the plan's."""
    fast = _query(LOCATION, {"t": "1"}, plans=True)
    assert fast._compiled is not None
    broken = replace(CAR, latitude=None)  # type: ignore[arg-type]
    body = fast.payload(broken, mask_internal=True)
    assert body == _query(LOCATION, {"t": "1"}, plans=False).payload(broken, mask_internal=True)
    assert b'"errors"' in body
