"""Who may see a trip: one rule, written side by side as SQL (queries, and the rows a
mutation loads) and in Python (live events, which carry `offered`). A dispatched trip
(one with a pick-up) exists while REQUESTED only for the drivers it was offered to
(rows of trip_offer); a trip without a pick-up is in every driver's pool, as before
dispatch existed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, bindparam, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from taxi.domain.models import Trip, TripOffer, TripStatus, UserGroup
from taxi.domain.readmodels import TripView

# The wave of a driver's offer row once they gave the trip back (releaseTrip): the row
# stays, so no later wave offers it to them again, but it is no offer.
RELEASED_WAVE = -1


def offered_clause(driver_id: int | None) -> ColumnElement[bool]:
    """In the driver's pool, whatever the status: every driver's when not dispatched
    (but the one who gave it back), else the offered ones'."""
    mine = (col(TripOffer.trip_id) == col(Trip.id), col(TripOffer.driver_id) == driver_id)
    offered = exists().where(*mine, col(TripOffer.wave) >= 0)
    released = exists().where(*mine, col(TripOffer.wave) == RELEASED_WAVE)
    return or_(and_(col(Trip.pick_up_latitude).is_(None), not_(released)), offered)


class Viewer(Protocol):
    """Whom the rule is about: a User, or the claims of a token not yet checked
    (taxi/domain/services/sessions.py `Claimed`)."""

    @property
    def id(self) -> int | None: ...

    @property
    def group(self) -> UserGroup: ...


@dataclass(frozen=True)
class Bound:
    """A viewer whose id is a bind parameter (`viewer`): statements that apply the rule
    are built once per group, as building them cost more than executing them."""

    group: UserGroup
    id: Any = field(default_factory=lambda: bindparam("viewer"))


def visible_clause(user: Viewer) -> ColumnElement[bool]:
    """The rule as a WHERE clause over `trip`."""
    if user.group is not UserGroup.DRIVER:
        return col(Trip.rider_id) == user.id
    in_pool = and_(col(Trip.status) == TripStatus.REQUESTED, offered_clause(user.id))
    return or_(in_pool, col(Trip.driver_id) == user.id)


def can_see(user_id: int, group: UserGroup, trip: TripView) -> bool:
    """The same rule on a view."""
    if group is not UserGroup.DRIVER:
        return trip.rider_id == user_id
    if trip.driver_id == user_id:
        return True
    return trip.status is TripStatus.REQUESTED and was_offered(user_id, trip)


def was_offered(driver_id: int, trip: TripView) -> bool:
    """`offered_clause` on a view."""
    if driver_id in trip.released:
        return False
    return trip.offered is None or driver_id in trip.offered


Sets = dict[uuid.UUID, tuple[int, ...]]


# Built once: every lifecycle step that reads a trip's offers runs it, and building a
# statement cost about as much as running it.
_OFFERS_OF = select(col(TripOffer.trip_id), col(TripOffer.driver_id), col(TripOffer.wave)).where(
    col(TripOffer.trip_id).in_(bindparam("trips", expanding=True))
)


async def offered_sets(
    session: AsyncSession | AsyncConnection, trip_ids: Sequence[uuid.UUID]
) -> tuple[Sets, Sets]:
    """The offered drivers and the drivers who gave it back, of each of `trip_ids`, in
    one query."""
    offered: dict[uuid.UUID, list[int]] = {i: [] for i in trip_ids}
    released: dict[uuid.UUID, list[int]] = {i: [] for i in trip_ids}
    if trip_ids:
        rows = await session.execute(_OFFERS_OF, {"trips": list(trip_ids)})
        for trip_id, driver_id, wave in rows:
            (released if wave == RELEASED_WAVE else offered)[trip_id].append(driver_id)
    return (
        {k: tuple(sorted(v)) for k, v in offered.items()},
        {k: tuple(sorted(v)) for k, v in released.items() if v},
    )
