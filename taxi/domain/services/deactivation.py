"""A user's account ended or restored by an admin: deactivation, reactivation, deletion.

Above the ride rules (taxi/domain/services/rides.py ends or releases the user's open trips)
and the sessions (taxi/domain/services/sessions.py: each end is published on the
`sessions` channel after commit, so every process closes the user's sockets with 4403)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypedDict, Unpack

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker, affected
from taxi.domain.events import Publisher
from taxi.domain.models import AuthSession, User, utcnow
from taxi.domain.positions import PositionStore
from taxi.domain.services import rides


class Backends(TypedDict):
    """What ending a user touches: their rows, the position store, the published events."""

    db: SessionMaker
    events: Publisher
    positions: PositionStore
    settings: Settings


async def deactivate_user(*, user_id: int, **backends: Unpack[Backends]) -> bool:
    """For admins: the user can no longer log in, every token and open socket of theirs
    is refused within a second, in every process, a driver leaves dispatch at once (no
    offer, no nearbyCars entry), and their open trips end with the account
    (taxi/domain/services/rides.py). True when the user existed."""

    async def deactivate(session: AsyncSession) -> int:
        found = await affected(
            session, update(User).where(col(User.id) == user_id).values(is_active=False)
        )
        await session.execute(
            update(AuthSession)
            .where(col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )
        return found

    return await _end_user(user_id=user_id, end=deactivate, **backends)


async def reactivate_user(*, db: SessionMaker, user_id: int) -> bool:
    """For admins: the user may log in again. Their sessions stay ended: every device
    signs in afresh. True when the user existed."""
    async with db() as session, session.begin():
        return bool(
            await affected(
                session, update(User).where(col(User.id) == user_id).values(is_active=True)
            )
        )


async def delete_user(*, user_id: int, **backends: Unpack[Backends]) -> bool:
    """For admins: delete the user (sessions and tokens cascade; their trips keep a
    NULL rider/driver, the open ones ended first as for a deactivation) and close their
    sockets everywhere."""

    async def delete_row(session: AsyncSession) -> int:
        return await affected(session, delete(User).where(col(User.id) == user_id))

    return await _end_user(user_id=user_id, end=delete_row, **backends)


async def _end_user(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user_id: int,
    end: Callable[[AsyncSession], Awaitable[int]],
) -> bool:
    """One transaction: the user's open trips ended (before `end` deletes the user and
    with it who drove them), then `end`; after the commit, their sockets closed and the
    trips' changes published."""
    async with db() as session, session.begin():
        closed = await rides.close_open_trips(
            session, positions=positions, settings=settings, user_id=user_id
        )
        found = await end(session)
    await events.session_ended(user_id=user_id)
    await rides.publish_closed(events=events, positions=positions, outcomes=closed, user_id=user_id)
    return bool(found)
