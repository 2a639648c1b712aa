"""This process's signed-in WebSockets: the per-user cap, and closing the sockets of a
session or user that ended, as heard on the `sessions` channel from any process.

The cap (MAX_SOCKETS_PER_USER) is counted per process: a user spread over N processes
may hold up to N times the cap. The registry is plain bookkeeping, independent of the
WebSocket protocol code that calls `add`/`discard` (taxi/transport/live/socket.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from taxi.domain import events
from taxi.domain.events import Kind
from taxi.transport.live.hub import Hub

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0  # the sessions channel could not be followed: try again after this


class Closable(Protocol):
    """A signed-in socket (taxi.transport.live.socket.Socket)."""

    async def forbid(self, message: str) -> None:
        """Close it with 4403 (legacy: a connection_error saying why, first)."""


class TooManySockets(Exception):
    """The user already holds MAX_SOCKETS_PER_USER sockets on this process."""


@dataclass(eq=False, slots=True)
class _Entry:
    user_id: int
    sid: str
    # Makes the socket's context refuse every further operation at once, before the
    # close frame is even written (taxi.api.context.Context.revoke).
    revoke: Callable[[], None]


class SocketRegistry:
    def __init__(self, *, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._entries: dict[Closable, _Entry] = {}
        self._by_user: dict[int, set[Closable]] = {}

    def add(self, ws: Closable, *, user_id: int, sid: str, revoke: Callable[[], None]) -> None:
        """Raises TooManySockets when the user is at the cap (this socket aside)."""
        self.discard(ws)
        mine = self._by_user.setdefault(user_id, set())
        if len(mine) >= self.max_per_user:
            if not mine:
                del self._by_user[user_id]
            raise TooManySockets
        mine.add(ws)
        self._entries[ws] = _Entry(user_id, sid, revoke)

    def discard(self, ws: Closable) -> None:
        entry = self._entries.pop(ws, None)
        if entry is not None:
            mine = self._by_user[entry.user_id]
            mine.discard(ws)
            if not mine:
                del self._by_user[entry.user_id]

    def count(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    async def end(self, *, user_id: int, sid: str | None) -> int:
        """Close (4403) the sockets of session `sid`, or of every session of the user."""
        ended = [
            ws
            for ws in self._by_user.get(user_id, ())
            if sid is None or self._entries[ws].sid == sid
        ]
        for ws in ended:
            self._entries[ws].revoke()
            self.discard(ws)
        await asyncio.gather(*(ws.forbid("Session ended.") for ws in ended))
        return len(ended)


async def follow(hub: Hub, registry: SocketRegistry) -> None:
    """Runs for the process's lifetime: ends local sockets as sessions end anywhere.
    An end published while the broadcast backend was down is missed here (a resync
    carries no data); HTTP requests of that session are refused regardless, by the
    per-request session check."""
    while True:
        try:
            async with hub.subscribe(events.SESSIONS) as inbox:
                async for item in inbox:
                    if item.kind is Kind.SESSION_ENDED:
                        body = item.body
                        await registry.end(user_id=int(body["user_id"]), sid=body.get("sid"))
        except (RedisError, OSError) as exc:
            log.warning("sessions channel unavailable (%r); retrying", exc)
            await asyncio.sleep(_RETRY_SECONDS)
