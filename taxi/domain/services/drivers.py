"""Drivers' dispatch state (goOnline, goOffline, updatePosition, driverState) and
nearbyCars. The per-report path touches only the position store and, while the driver drives
a trip, that trip's location channel (both batched per loop pass): no SQL at all."""

from __future__ import annotations

import time
from dataclasses import dataclass

from taxi.core.config import Settings
from taxi.domain.errors import BadUserInput, Conflict, Forbidden
from taxi.domain.models import User, UserGroup
from taxi.domain.positions import Availability, Fix, PositionStore
from taxi.domain.readmodels import LocationView
from taxi.domain.reports import Reports
from taxi.domain.services.trips import location_errors

MAX_NEARBY_RADIUS = 10_000
MAX_NEARBY = 50


@dataclass(frozen=True)
class StateView:
    availability: Availability
    position: LocationView | None


def _driver(user: User) -> int:
    if user.group is not UserGroup.DRIVER or user.id is None:
        raise Forbidden("Only drivers have a dispatch state.")
    return user.id


def _fix(latitude: float, longitude: float, heading: float | None) -> Fix:
    if errors := location_errors(latitude, longitude, heading):
        raise BadUserInput("Invalid location.", fields=errors)
    return Fix(latitude, longitude, heading, time.time())


def _fresh(fix: Fix | None, settings: Settings) -> LocationView | None:
    if fix is None or fix.at < time.time() - settings.position_ttl:
        return None
    return fix.view()


async def driver_state(*, positions: PositionStore, settings: Settings, user: User) -> StateView:
    state, fix = await positions.status(driver_id=_driver(user))
    return StateView(state.availability, _fresh(fix, settings))


async def update_position(
    *,
    reports: Reports,
    user: User,
    latitude: float,
    longitude: float,
    heading: float | None,
    online: bool = False,
) -> StateView:
    """updatePosition (and goOnline, with `online`): CONFLICT while OFFLINE, since the
    input is fine but the driver's state does not take positions (nothing is stored)."""
    driver = _driver(user)
    # Reports of one loop pass share a round trip; a newer report of the same driver
    # that arrives while this one waits wins, and this one answers with its result
    # (taxi/domain/reports.py). The trip's watchers get the position from there.
    state, fix = await reports.report(
        driver_id=driver, fix=_fix(latitude, longitude, heading), online=online
    )
    if state.availability is Availability.OFFLINE:
        raise Conflict("Go online first: positions are taken from online drivers only.")
    return StateView(state.availability, fix.view())


async def go_offline(*, positions: PositionStore, user: User) -> StateView:
    state = await positions.go_offline(driver_id=_driver(user))
    if state.availability is Availability.ON_TRIP:
        raise Conflict("You are driving a trip; finish it first.")
    return StateView(Availability.OFFLINE, None)


@dataclass(frozen=True)
class CarView:
    location: LocationView
    distance: float


async def nearby_cars(
    *,
    positions: PositionStore,
    settings: Settings,
    user: User,
    latitude: float,
    longitude: float,
    radius: int,
    first: int,
) -> list[CarView]:
    """Any signed-in user (`user` proves it); anonymous: no driver identity leaves here."""
    errors = location_errors(latitude, longitude, None)
    if not 0 < radius <= MAX_NEARBY_RADIUS:
        errors["radiusMeters"] = [f"Must be between 1 and {MAX_NEARBY_RADIUS}."]
    if not 0 <= first <= MAX_NEARBY:
        errors["first"] = [f"Must be between 0 and {MAX_NEARBY}."]
    if errors:
        raise BadUserInput("Invalid input.", fields=errors)
    found = await positions.nearest(
        latitude=latitude,
        longitude=longitude,
        radius=radius,
        count=first,
        fresh_after=time.time() - settings.position_ttl,
    )
    return [CarView(n.fix.view(), n.distance) for n in found]
