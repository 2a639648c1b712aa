"""Sessions (token families): started by log-in, ended by log-out, by a replayed refresh
token, or with their user (deactivated, deleted).

Every access and refresh token carries its session's id (`sid`). Each request loads the
user and the session in one indexed query (`load_signed_in`), so an ended session or user
is refused on the next request in every process; each process also hears the end on the
`sessions` channel (published after commit) and closes its matching sockets with 4403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker, affected
from taxi.domain.events import Publisher
from taxi.domain.models import AuthSession, RefreshToken, User, UserGroup, utcnow
from taxi.domain.positions import PositionStore
from taxi.domain.services import rides


async def start(session: AsyncSession, *, user_id: int) -> str:
    """A new session row for a log-in; the caller commits."""
    row = AuthSession(user_id=user_id)
    session.add(row)
    return row.id


async def revoke(session: AsyncSession, *, sid: str) -> bool:
    """End a session (its refresh tokens die with it: refresh checks the session)."""
    return bool(
        await affected(
            session,
            update(AuthSession)
            .where(col(AuthSession.id) == sid, col(AuthSession.revoked_at).is_(None))
            .values(revoked_at=utcnow()),
        )
    )


async def family_of_used_token(session: AsyncSession, *, jti: str) -> str | None:
    """The session of a refresh token that exists but was already used (or revoked)."""
    return (
        await session.scalars(
            select(col(RefreshToken.session_id)).where(
                col(RefreshToken.jti) == jti, col(RefreshToken.revoked_at).is_not(None)
            )
        )
    ).first()


_OWNED = col(AuthSession.user_id) == col(User.id)


def _live(user_id: Any, sid: Any) -> tuple[ColumnElement[bool], ...]:
    """The session `sid` of user `user_id` has not ended, nor has its user."""
    return (
        col(AuthSession.id) == sid,
        col(User.id) == user_id,
        col(AuthSession.revoked_at).is_(None),
        col(User.is_active).is_(True),
    )


# Built once: constructing the expression per request cost more than running it.
_SIGNED_IN = (
    select(User).join(AuthSession, _OWNED).where(*_live(bindparam("user_id"), bindparam("sid")))
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """Who an access token says its bearer is (its signature checked, the session
    not yet): enough to write the visibility rule (taxi/domain/offers.py) for a statement
    that checks the session itself (`SIGNED_IN`, with `params`)."""

    id: int
    group: UserGroup
    sid: str

    @classmethod
    def of(cls, claims: dict[str, Any]) -> Claimed | None:
        """None for claims without a known group."""
        try:
            group = UserGroup(claims.get("group"))
        except ValueError:
            return None
        return cls(id=int(claims["sub"]), group=group, sid=str(claims["sid"]))

    def params(self) -> dict[str, Any]:
        return {"signed_in_user": self.id, "signed_in_sid": self.sid, "signed_in_group": self.group}


# `load_signed_in` as a condition of another statement, the group included: true while
# the session and its user are live and the user is in that group (`Claimed.params`).
SIGNED_IN = exists().where(
    _OWNED,
    *_live(bindparam("signed_in_user"), bindparam("signed_in_sid")),
    col(User.group) == bindparam("signed_in_group"),
)


async def load_signed_in(session: AsyncSession, *, user_id: int, sid: str) -> User | None:
    """The active user of a live session, in one query on two primary keys (the
    per-request cost of session checking); None when either has ended."""
    row = (await session.execute(_SIGNED_IN, {"sid": sid, "user_id": user_id})).first()
    return row[0] if row else None


async def deactivate_user(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user_id: int,
) -> bool:
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

    return await _end_user(
        db=db,
        events=events,
        positions=positions,
        settings=settings,
        user_id=user_id,
        end=deactivate,
    )


async def reactivate_user(*, db: SessionMaker, user_id: int) -> bool:
    """For admins: the user may log in again. Their sessions stay ended: every device
    signs in afresh. True when the user existed."""
    async with db() as session, session.begin():
        return bool(
            await affected(
                session, update(User).where(col(User.id) == user_id).values(is_active=True)
            )
        )


async def delete_user(
    *,
    db: SessionMaker,
    events: Publisher,
    positions: PositionStore,
    settings: Settings,
    user_id: int,
) -> bool:
    """For admins: delete the user (sessions and tokens cascade; their trips keep a
    NULL rider/driver, the open ones ended first as for a deactivation) and close their
    sockets everywhere."""

    async def delete_row(session: AsyncSession) -> int:
        return await affected(session, delete(User).where(col(User.id) == user_id))

    return await _end_user(
        db=db,
        events=events,
        positions=positions,
        settings=settings,
        user_id=user_id,
        end=delete_row,
    )


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
