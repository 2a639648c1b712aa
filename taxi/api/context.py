"""The typed context every resolver gets, one per HTTP request or per WebSocket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taxi.domain.errors import Unauthenticated

if TYPE_CHECKING:
    from broadcaster import Broadcast
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from starlette.requests import HTTPConnection
    from starlette.responses import Response

    from taxi.api.persisted import Documents
    from taxi.core.config import Settings
    from taxi.core.db import SessionMaker
    from taxi.core.ratelimit import Limiter
    from taxi.domain.events import Publisher
    from taxi.domain.logins import LoginLimits
    from taxi.domain.models import User
    from taxi.domain.positions import PositionStore
    from taxi.domain.reports import Reports
    from taxi.domain.routes import Router


@dataclass
class Services:
    """What the lifespan opened; shared by every request of one process. (The live
    layer's hub and socket registry are the transport's: taxi/transport/live/endpoint.py.)"""

    settings: Settings
    engine: AsyncEngine
    db: SessionMaker
    broadcast: Broadcast
    events: Publisher
    logins: LoginLimits  # logIn and /admin/login (taxi/domain/logins.py)
    signups: Limiter  # sign-ups per client address
    trip_requests: Limiter  # requestTrip per rider
    positions: PositionStore
    reports: Reports  # position reports, batched per loop pass (in front of `positions`)
    router: Router  # route length and time for quotes (ROUTER_URL, else the estimate)
    documents: Documents


@dataclass
class Context:
    services: Services
    request: HTTPConnection  # a Request over HTTP; the handshake's on a WebSocket
    response: Response | None = None
    # The raw bearer token (HTTP header, or connection_init on a socket).
    token: str | None = None
    _user: User | None = field(default=None, repr=False)
    _auth_error: Unauthenticated | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def db(self) -> SessionMaker:
        return self.services.db

    def revoke(self) -> None:
        """The session or user ended (taxi/transport/live/registry.py): refuse every
        further operation."""
        self._user = None
        self._auth_error = Unauthenticated("Session ended.")

    def known_user(self) -> User | None:
        """The user once `user` has authenticated them (a socket's, from connection_init);
        None before, or once revoked: then `user` says what is wrong."""
        return self._user

    async def user(self, session: AsyncSession | None = None) -> User:
        """The signed-in, active user; Unauthenticated otherwise. Cached per context.
        `session`: one the caller opened for its reads, to check the token in too."""
        if self._user is not None:
            return self._user
        if self._auth_error is not None:
            raise self._auth_error
        from taxi.domain.services.accounts import authenticate

        try:
            self._user = await authenticate(
                db=self.db, settings=self.settings, token=self.token, session=session
            )
        except Unauthenticated as exc:
            self._auth_error = exc
            raise
        return self._user
