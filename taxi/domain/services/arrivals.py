"""Arrival at the pick-up: the position store notices it (the first report within
ARRIVAL_METERS while STARTED, atomically, once) and queues the trip; this records it,
from every process's dispatch worker: `arrived_at` set by a conditional UPDATE (one
writer wins, whatever the number of processes), then published as a tripUpdated event
("your driver is here"). The report itself never waits for SQL."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import update
from sqlmodel import col

from taxi.core.db import SessionMaker, affected
from taxi.domain.events import Kind, Publisher
from taxi.domain.models import Trip, TripStatus, utcnow
from taxi.domain.positions import PositionStore
from taxi.domain.services import reads

log = logging.getLogger(__name__)

# Arrivals recorded per pass at most; the rest wait for the next one.
BATCH = 100


async def record(*, db: SessionMaker, positions: PositionStore, events: Publisher) -> int:
    """Record the queued arrivals; returns how many this process recorded. A trip that
    moved on meanwhile (released, canceled) records nothing; the queue entry goes
    either way, and only after the commit: a process that dies first leaves it to the
    next pass."""
    queued = await positions.arrivals(limit=BATCH)
    if not queued:
        return 0
    recorded: list[uuid.UUID] = []
    async with db() as session, session.begin():
        connection = await session.connection()  # Core: no objects to bring up to date
        now = utcnow()
        for trip_id in queued:
            arrived = (
                update(Trip)
                .where(
                    col(Trip.id) == trip_id,
                    col(Trip.status) == TripStatus.STARTED,
                    col(Trip.arrived_at).is_(None),
                )
                .values(arrived_at=now, updated=now)
            )
            if await affected(connection, arrived) == 1:
                recorded.append(trip_id)
        views = []
        if recorded:
            # STARTED trips, to their parties: no offers to read.
            no_offers = reads.NO_OFFERS
            loaded = await reads.by_ids(connection, recorded, positions=positions, offers=no_offers)
            views = loaded.trips
    await positions.arrival_recorded(trip_ids=queued)
    for view in views:
        await events.trip_changed(view, kind=Kind.ARRIVED)
    return len(recorded)
