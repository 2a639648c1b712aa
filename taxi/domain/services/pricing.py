"""estimateFare and the surge near a pick-up: demand (trips requested in the last
minutes near it, from the database) against supply (AVAILABLE drivers within
DISPATCH_RADIUS_METERS, from the position store). Both are shared state, so every
process computes the same surge for the same moment."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker
from taxi.domain.errors import BadUserInput, Forbidden
from taxi.domain.fares import Tariff
from taxi.domain.models import Trip, User, UserGroup, utcnow
from taxi.domain.positions import METERS_PER_DEGREE, Nearby, PositionStore
from taxi.domain.quotes import Quote
from taxi.domain.routes import Router
from taxi.domain.services.drivers import anonymous
from taxi.domain.services.points import Coordinates

# "The last few minutes" of demand.
DEMAND_WINDOW = timedelta(minutes=5)
# Drivers counted as supply at most (and reported as carsNearby): past this many, the
# ratio only matters in rush hours that dwarf it, and the search stays bounded.
SUPPLY_CAP = 200


# Trips requested since `since` with a pick-up in the box: built once (every request and
# quote runs it, and building it cost about as much as running it).
_DEMAND = (
    select(func.count())
    .select_from(Trip)
    .where(
        col(Trip.created) >= bindparam("since"),
        col(Trip.pick_up_latitude).between(bindparam("south"), bindparam("north")),
        col(Trip.pick_up_longitude).between(bindparam("west"), bindparam("east")),
    )
)


@dataclass(frozen=True, slots=True)
class Market:
    """Demand against supply near a point, now."""

    surge: float
    cars: int
    nearest_eta: int | None  # the nearest available car's ETA to the point
    # The `drivers` nearest available drivers (market's argument), nearest first.
    nearest: list[Nearby]


async def market(
    session: AsyncSession,
    *,
    positions: PositionStore,
    settings: Settings,
    point: tuple[float, float],
    drivers: int = 1,
) -> Market:
    radius = settings.dispatch_radius_meters
    # A box around the circle (index on `created`, then the box): near enough for a ratio.
    dlat = radius / METERS_PER_DEGREE
    dlon = radius / (METERS_PER_DEGREE * max(math.cos(math.radians(point[0])), 1e-6))
    box = {
        "since": utcnow() - DEMAND_WINDOW,
        "south": point[0] - dlat,
        "north": point[0] + dlat,
        "west": point[1] - dlon,
        "east": point[1] + dlon,
    }
    # Core on the session's connection: the ORM's execution of it cost as much again.
    counting = (await session.connection()).scalar(_DEMAND, box)
    searching = positions.supply(
        latitude=point[0],
        longitude=point[1],
        radius=radius,
        cap=SUPPLY_CAP,
        fresh_after=time.time() - settings.position_ttl,
        nearest=drivers,
    )
    # Two stores, one wait: at rush hour each sequential round trip waits a loop pass.
    # Both end before anything is raised: the session must be idle for the caller's next
    # statement.
    demand, supplied = await asyncio.gather(counting, searching, return_exceptions=True)
    if isinstance(demand, BaseException):
        raise demand
    if isinstance(supplied, BaseException):
        raise supplied
    cars, nearest = supplied
    first = nearest[0] if nearest else None
    surge = Tariff.of(settings).surge(demand=int(demand or 0), supply=cars)
    # As nearbyCars shows the car (rounded): an exact ETA would give its exact distance.
    shown = anonymous(first.fix, *point, positions.estimator) if first else None
    return Market(
        surge=surge,
        cars=cars,
        nearest_eta=None if shown is None else shown.eta_seconds,
        nearest=nearest,
    )


@dataclass(frozen=True, slots=True)
class QuoteView:
    id: str
    quote: Quote
    currency: str
    cars: int
    pick_up_eta: int | None
    expires_at: datetime


async def estimate_fare(
    *,
    db: SessionMaker,
    positions: PositionStore,
    router: Router,
    settings: Settings,
    user: User,
    pick_up: tuple[float, float],
    drop_off: tuple[float, float],
) -> QuoteView:
    if user.group is not UserGroup.RIDER or user.id is None:
        raise Forbidden("Only riders can ask for a fare.")
    if errors := Coordinates(pick_up=pick_up, drop_off=drop_off).errors():
        raise BadUserInput("Invalid input.", fields=errors)
    route = await router.route(start=pick_up, end=drop_off)
    async with db() as session:
        now = await market(session, positions=positions, settings=settings, point=pick_up)
    tariff = Tariff.of(settings)
    expires = time.time() + settings.fare_quote_ttl
    quote = Quote(
        rider=user.id,
        pick_up=pick_up,
        drop_off=drop_off,
        meters=route.meters,
        seconds=route.seconds,
        surge=now.surge,
        price=tariff.price(meters=route.meters, seconds=route.seconds, surge=now.surge),
        expires=expires,
    )
    assert settings.jwt_secret is not None
    return QuoteView(
        id=quote.sign(secret=settings.jwt_secret),
        quote=quote,
        currency=tariff.currency,
        cars=now.cars,
        pick_up_eta=now.nearest_eta,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )
