"""Who may use the admin: active staff users, signed in through the same log-in limits as
`logIn`, each sign-in a server-side session (an `auth_session` row) that logging out,
deactivation or demotion ends at once, and a CSRF token for every change.

The signed cookie carries only the user id, the session id and the CSRF token; what
decides is the row, so a copied cookie stops working when its session ends."""

from __future__ import annotations

import hmac
import secrets

from sqladmin.authentication import AuthenticationBackend
from starlette.exceptions import HTTPException
from starlette.requests import Request

from taxi.api.context import Services
from taxi.domain.errors import BadUserInput, Unauthenticated
from taxi.domain.services import sessions
from taxi.domain.services.accounts import verify_credentials

STAFF_ID = "staff_id"
SESSION_ID = "sid"
CSRF = "csrf"  # the session's token, and the name of the form field that must repeat it


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def csrf_token(request: Request) -> str:
    """For templates: the token a form must send back (empty when signed out)."""
    token = request.session.get(CSRF)
    return token if isinstance(token, str) else ""


async def require_csrf(request: Request) -> None:
    """A state change must come from a form this session rendered: SameSite alone
    leaves same-site pages and older browsers able to forge it."""
    form = await request.form()
    sent, expected = form.get(CSRF), csrf_token(request)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="The form has expired; reload the page.")


class StaffOnly(AuthenticationBackend):
    async def login(self, request: Request) -> bool:
        """RateLimited and ServiceUnavailable propagate: the admin answers them with 429
        and 503 (taxi/transport/admin)."""
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        services = services_of(request)
        try:
            user = await verify_credentials(
                db=services.db,
                settings=services.settings,
                limits=services.logins,
                username=username,
                password=password,
                client=request.client.host if request.client else None,
            )
        except (Unauthenticated, BadUserInput):
            return False
        if not user.is_staff or user.id is None:
            return False
        async with services.db() as session, session.begin():
            sid = await sessions.start(session, user_id=user.id)
        # Nothing from before the sign-in survives it (no fixed session, no old token).
        request.session.clear()
        request.session.update(
            {STAFF_ID: user.id, SESSION_ID: sid, CSRF: secrets.token_urlsafe(32)}
        )
        return True

    async def logout(self, request: Request) -> bool:
        sid = request.session.get(SESSION_ID)
        if isinstance(sid, str):
            async with services_of(request).db() as session, session.begin():
                await sessions.revoke(session, sid=sid)
        request.session.clear()
        return False  # sqladmin then redirects to the log-in page

    async def authenticate(self, request: Request) -> bool:
        user_id, sid = request.session.get(STAFF_ID), request.session.get(SESSION_ID)
        if not isinstance(user_id, int) or not isinstance(sid, str):
            return False
        # Checked on every request: a session ended, or a staff user deactivated or
        # demoted, is out at once.
        async with services_of(request).db() as session:
            user = await sessions.load_signed_in(session, user_id=user_id, sid=sid)
        return user is not None and user.is_staff
