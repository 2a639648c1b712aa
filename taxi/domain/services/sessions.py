"""Sessions (token families): started by log-in, ended by log-out, by a replayed refresh
token, or with their user (deactivated, deleted).

Every access and refresh token carries its session's id (`sid`). Each request loads the
user and the session in one indexed query (`load_signed_in`), so an ended session or user
is refused on the next request in every process; each process also hears the end on the
`sessions` channel (published after commit) and closes its matching sockets with 4403."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.db import SessionMaker, affected
from taxi.domain import availability
from taxi.domain.events import Publisher
from taxi.domain.models import AuthSession, RefreshToken, User, UserGroup, utcnow
from taxi.domain.positions import PositionStore


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
    *, db: SessionMaker, events: Publisher, positions: PositionStore, user_id: int
) -> bool:
    """For admins: the user can no longer log in, every token and open socket of theirs
    is refused within a second, in every process, and a driver leaves dispatch at once
    (no offer, no nearbyCars entry). True when the user existed."""
    async with db() as session, session.begin():
        found = await affected(
            session, update(User).where(col(User.id) == user_id).values(is_active=False)
        )
        await session.execute(
            update(AuthSession)
            .where(col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )
    await _leave_dispatch(positions, user_id)
    await events.session_ended(user_id=user_id)
    return bool(found)


async def delete_user(
    *, db: SessionMaker, events: Publisher, positions: PositionStore, user_id: int
) -> bool:
    """For admins: delete the user (sessions and tokens cascade; their trips keep a
    NULL rider/driver), take them out of dispatch and close their sockets everywhere."""
    async with db() as session, session.begin():
        found = await affected(session, delete(User).where(col(User.id) == user_id))
    await _leave_dispatch(positions, user_id)
    await events.session_ended(user_id=user_id)
    return bool(found)


async def _leave_dispatch(positions: PositionStore, user_id: int) -> None:
    """After commit: out of the position store. Should the store be unreachable, the
    offer path still skips an inactive user (taxi/domain/availability.py `unfit`)."""
    await availability.after_commit("leaving dispatch", positions.go_offline(driver_id=user_id))
