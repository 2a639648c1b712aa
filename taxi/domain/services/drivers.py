"""Drivers' dispatch state (goOnline, goOffline, updatePosition, driverState) and
nearbyCars. The per-report path touches only the position store and, while the driver drives
a trip, that trip's location channel (both batched per loop pass): no SQL at all."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from taxi.core.config import Settings
from taxi.core.db import SessionMaker
from taxi.domain import availability
from taxi.domain.errors import BadUserInput, Conflict, Forbidden
from taxi.domain.models import User, UserGroup
from taxi.domain.positions import Availability, Fix, PositionStore, distance
from taxi.domain.readmodels import LocationView
from taxi.domain.reports import Outcome, Reports
from taxi.domain.routes import Estimator
from taxi.domain.services.points import location_errors

MAX_NEARBY_RADIUS = 10_000
MAX_NEARBY = 50
# nearbyCars is anonymous (PROTOCOL.md): coordinates to 3 decimals (~100 m), report times
# to the minute and no heading, so that a car cannot be followed report by report.
NEARBY_DECIMALS = 3
NEARBY_SECONDS = 60


@dataclass(slots=True)  # not frozen: one per position report (as Fix)
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
    outcome = await reports.report(
        driver_id=driver, fix=_fix(latitude, longitude, heading), online=online
    )
    return _state(outcome)


def submit_position(
    *,
    reports: Reports,
    user: User,
    latitude: float,
    longitude: float,
    heading: float | None,
    done: Callable[[StateView | None, BaseException | None], None],
) -> None:
    """updatePosition without awaiting it: `done` gets its answer (or its error) from
    the report's batch. What the input or the user does not allow raises here, before
    anything is submitted."""
    driver = _driver(user)
    fix = _fix(latitude, longitude, heading)

    def answered(outcome: Outcome | None, error: BaseException | None) -> None:
        if outcome is None:
            done(None, error)
            return
        try:
            view = _state(outcome)
        except Conflict as exc:
            done(None, exc)
            return
        done(view, None)

    reports.submit(driver_id=driver, fix=fix, online=False, done=answered)


def _state(outcome: Outcome) -> StateView:
    state, fix = outcome
    if state.availability is Availability.OFFLINE:
        raise Conflict("Go online first: positions are taken from online drivers only.")
    return StateView(state.availability, fix.view())


async def go_offline(*, db: SessionMaker, positions: PositionStore, user: User) -> StateView:
    """CONFLICT while the rows hold a trip the driver drives (taxi/domain/availability.py)."""
    await availability.go_offline(db=db, positions=positions, driver_id=_driver(user))
    return StateView(Availability.OFFLINE, None)


@dataclass(frozen=True)
class CarView:
    location: LocationView
    distance: float
    eta_seconds: int


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
    cars = [anonymous(n.fix, latitude, longitude, positions.estimator) for n in found]
    return sorted(cars, key=lambda c: c.distance)


def anonymous(fix: Fix, latitude: float, longitude: float, estimator: Estimator) -> CarView:
    """The car as nearbyCars (and a quote's pick-up ETA) shows it; its distance and ETA are
    from the rounded point, or the exact one could be recovered from several queries
    (trilateration)."""
    lat, lon = round(fix.latitude, NEARBY_DECIMALS), round(fix.longitude, NEARBY_DECIMALS)
    minute = fix.at - fix.at % NEARBY_SECONDS
    location = LocationView(
        latitude=lat,
        longitude=lon,
        heading=None,
        recorded_at=datetime.fromtimestamp(minute, UTC),
    )
    eta = estimator.route(start=(lat, lon), end=(latitude, longitude)).seconds
    return CarView(location, distance(latitude, longitude, lat, lon), eta)
