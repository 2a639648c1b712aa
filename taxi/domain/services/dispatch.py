"""Waves of offers (PROTOCOL.md "Dispatch near the pick-up") and the expiry of requests
nobody took ("Fares and the ride's life").

The first wave is recorded in the transaction that creates the trip. Each later one is
a row of `dispatch_wave` (the durable schedule): a per-process worker claims due rows
with FOR UPDATE SKIP LOCKED, records the wave's offers and advances the row in one
transaction, then publishes. A process killed mid-wave rolls back and another one runs
that wave; a committed wave is never run again. The same row carries the request's
expiry: the pass that finds it past `expires_at` cancels the trip (NO_DRIVER_FOUND) in
that transaction, so that happens once too, whichever process claims it, also after a
restart. (SQLite serves one process: no SKIP
LOCKED there, and its single writer serialises the same steps.)"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from redis.exceptions import RedisError
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core import metrics
from taxi.core.config import Settings
from taxi.core.db import SessionMaker, affected
from taxi.domain import availability
from taxi.domain.events import Kind, Publisher
from taxi.domain.models import CancelReason, DispatchWave, Trip, TripOffer, TripStatus, utcnow
from taxi.domain.positions import Nearby, PositionStore
from taxi.domain.services import arrivals, reads

log = logging.getLogger(__name__)

# Due waves claimed per transaction; the rest wait for the next pass.
CLAIM_BATCH = 50
# The worker looks for due waves this often (a fraction of the wave interval, at most 1 s).
POLL_FRACTION = 0.1
MAX_POLL = 1.0
# How long shutdown waits for the pass under way.
STOP_GRACE = 5.0
# Stale positions are pruned from the index every this many passes.
PRUNE_EVERY = 20


# Every request runs these (Core, built once: a session's objects and unit of work cost
# more than the statements; the rows are read back by queries, never as objects here).
_OFFER = insert(TripOffer)
_SCHEDULE = insert(DispatchWave)
_UNSCHEDULE = delete(DispatchWave).where(col(DispatchWave.trip_id) == bindparam("trip"))


class Pickup(Protocol):
    """What dispatch reads of a trip: a Trip, or a new one's row (services.trips)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def pick_up_latitude(self) -> float | None: ...

    @property
    def pick_up_longitude(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Searched:
    """A search made already (the request's market): the nearest drivers within `radius`."""

    radius: float
    nearest: list[Nearby]


def radius(settings: Settings, wave: int) -> float:
    """The first wave's radius, doubling per wave, up to the maximum."""
    base = settings.dispatch_radius_meters * 2 ** min(wave, 32)
    return float(min(base, settings.dispatch_max_radius_meters))


async def offer_wave(
    session: AsyncSession,
    *,
    positions: PositionStore,
    settings: Settings,
    trip: Pickup,
    wave: int,
    offered: frozenset[int] | None = None,
    searched: Searched | None = None,
) -> list[int]:
    """Record wave `wave` of `trip` (in the caller's transaction): the nearest fresh,
    available drivers within the wave's radius that were not offered it yet (`offered`
    when the caller knows them, else read from the rows; `searched`: the caller's own
    search of a radius, used when it is this wave's and nobody was offered the trip)."""
    assert trip.pick_up_latitude is not None and trip.pick_up_longitude is not None
    if offered is None:
        offered = frozenset(
            await session.scalars(
                select(col(TripOffer.driver_id)).where(col(TripOffer.trip_id) == trip.id)
            )
        )
    unfit: set[int] = set()
    # The store may still list a driver the rows exclude (deactivated, or an accept that
    # committed a moment ago): the rows win. One more search looks past them.
    within = radius(settings, wave)
    for _ in range(2):
        if searched is not None and searched.radius == within and not offered | unfit:
            found = searched.nearest[: settings.dispatch_batch_size]
        else:
            found = await positions.nearest(
                latitude=trip.pick_up_latitude,
                longitude=trip.pick_up_longitude,
                radius=within,
                count=settings.dispatch_batch_size,
                fresh_after=time.time() - settings.position_ttl,
                exclude=offered | unfit,
            )
        rejected = await availability.unfit(session, (n.driver_id for n in found))
        if not rejected:
            break
        unfit |= rejected
    drivers = [n.driver_id for n in found if n.driver_id not in unfit]
    if drivers:
        now = utcnow()
        rows = [{"trip_id": trip.id, "driver_id": d, "wave": wave, "created": now} for d in drivers]
        await (await session.connection()).execute(_OFFER, rows)
    return drivers


async def schedule(
    session: AsyncSession, *, settings: Settings, trip: Pickup, again: bool = False
) -> None:
    """A requested (or released: `again`) trip's schedule: its second wave one interval
    from now (dispatched trips), its expiry DISPATCH_TIMEOUT_SECONDS from now (every
    trip). A release replaces the row the trip had."""
    now = utcnow()
    expires = now + timedelta(seconds=settings.dispatch_timeout_seconds)
    due = expires
    if trip.pick_up_latitude is not None:
        due = min(due, now + timedelta(seconds=settings.dispatch_wave_seconds))
    connection = await session.connection()
    if again:
        await connection.execute(_UNSCHEDULE, {"trip": trip.id})
    await connection.execute(
        _SCHEDULE, {"trip_id": trip.id, "wave": 1, "due_at": due, "expires_at": expires}
    )


async def _expire(session: AsyncSession, trip: Trip) -> bool:
    """Cancel a request nobody took; False when it changed meanwhile (it stays as it is)."""
    now = utcnow()
    canceled = (
        update(Trip)
        .where(col(Trip.id) == trip.id, col(Trip.status) == TripStatus.REQUESTED)
        .values(
            status=TripStatus.CANCELED,
            cancel_reason=CancelReason.NO_DRIVER_FOUND,
            ended_at=now,
            updated=now,
        )
    )
    return await affected(session, canceled) == 1


async def run_due(
    *, db: SessionMaker, positions: PositionStore, events: Publisher, settings: Settings
) -> int:
    """Run every due wave this process can claim; returns how many ran."""
    published = []
    expired = []
    waves: list[int] = []  # offers per wave run, counted once committed
    async with db() as session, session.begin():
        now = utcnow()
        rows = (
            await session.scalars(
                select(DispatchWave)
                .where(col(DispatchWave.due_at) <= now)
                .order_by(col(DispatchWave.due_at))
                .limit(CLAIM_BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            trip = await session.get(Trip, row.trip_id)
            if trip is None or trip.status is not TripStatus.REQUESTED:
                await session.delete(row)
                continue
            if row.expires_at is None:
                # A request from before 0004 (migration 0005): it expires as it would have
                # had it been made today, DISPATCH_TIMEOUT_SECONDS after it was.
                row.expires_at = trip.created + timedelta(seconds=settings.dispatch_timeout_seconds)
            expires = row.expires_at
            if expires <= now:
                if await _expire(session, trip):
                    expired.append(trip.id)
                await session.delete(row)
                continue
            row.due_at = expires
            if trip.pick_up_latitude is None:
                continue  # in every driver's pool: only its expiry is scheduled
            drivers = await offer_wave(
                session, positions=positions, settings=settings, trip=trip, wave=row.wave
            )
            row.wave += 1
            row.due_at = min(row.due_at, now + timedelta(seconds=settings.dispatch_wave_seconds))
            waves.append(len(drivers))
            if drivers:
                published.append((trip, drivers))
        await session.flush()
        ids = [t.id for t, _ in published] + expired
        loaded = await reads.by_ids(session, ids, positions=positions) if ids else None
        views = {v.id: v for v in loaded.trips} if loaded else {}
    for offers in waves:
        metrics.wave(offers=offers)
    # One run's waves and expiries are independent messages: out together.
    await events.send(
        *(events.offer(views[trip.id], drivers) for trip, drivers in published),
        *(events.trip_change(views[t], kind=Kind.EXPIRED, left_pool=True) for t in expired),
    )
    return len(rows)


def _ended(task: asyncio.Task[None]) -> None:
    """A worker that stopped for anything but shutdown is a bug: say so loudly (the
    schedule is durable: other processes, or this one restarted, run what is due)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("dispatch worker stopped", exc_info=exc)


@asynccontextmanager
async def running(
    *, db: SessionMaker, positions: PositionStore, events: Publisher, settings: Settings
) -> AsyncIterator[None]:
    """The per-process worker, for the app's lifespan. At shutdown the pass under way
    finishes (bounded): a pass cut short rolls back safely, but cancelling one in the
    middle of the pool's checkout leaves the pool's bookkeeping (and its metrics) off."""
    stop = asyncio.Event()

    async def loop() -> None:
        poll = min(MAX_POLL, settings.dispatch_wave_seconds * POLL_FRACTION)
        passes = 0
        while not stop.is_set():
            try:
                await run_due(db=db, positions=positions, events=events, settings=settings)
                await arrivals.record(db=db, positions=positions, events=events)
                passes += 1
                if passes % PRUNE_EVERY == 0:
                    await positions.prune(fresh_after=time.time() - settings.position_ttl)
            except (DBAPIError, OperationalError, RedisError, OSError) as exc:
                # An outage: the schedule is durable, the next pass (here or in another
                # process) runs what is due.
                log.warning("dispatch pass failed: %r", exc)
            with suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await stop.wait()

    task = asyncio.create_task(loop(), name="taxi-dispatch")
    task.add_done_callback(_ended)
    try:
        yield
    finally:
        stop.set()
        try:
            async with asyncio.timeout(STOP_GRACE):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
