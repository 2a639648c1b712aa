"""The admin UI at `/admin/` (sqladmin): a home page with today's figures, users (search,
deactivate, reactivate) and trips (filter by status, read-only), for active staff users
only (`taxi createsuperuser` makes one).

sqladmin's own log-in and log-out are wrapped: the log-in answers the shared log-in limits
with 429, and logging out is a POST with the CSRF token that ends the session on the
server (a GET only shows the button)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from sqladmin import Admin
from sqladmin.authentication import login_required
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from taxi.api.context import Services
from taxi.core.config import Settings
from taxi.domain.errors import RateLimited, ServiceUnavailable
from taxi.domain.services import figures
from taxi.transport.admin.staff import StaffOnly, csrf_token, require_csrf, services_of
from taxi.transport.admin.views import TripAdmin, UserAdmin

SESSION_MAX_AGE = 8 * 3600  # an admin session lasts a working day
TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "admin"


def session_secret(settings: Settings) -> str:
    """The session cookie's signing key: derived from JWT_SECRET, so it survives restarts
    as the tokens do, and is never the JWT key itself."""
    assert settings.jwt_secret
    return hmac.new(settings.jwt_secret.encode(), b"taxi admin session", hashlib.sha256).hexdigest()


class TaxiAdmin(Admin):
    def __init__(self, app: Starlette, settings: Settings) -> None:
        super().__init__(
            app,
            session_maker=async_sessionmaker(class_=AsyncSession, expire_on_commit=False),
            base_url="/admin",
            title="taxi admin",
            templates_dir=str(TEMPLATES),
            authentication_backend=StaffOnly(
                secret_key=session_secret(settings),
                max_age=SESSION_MAX_AGE,
                https_only=settings.production,
                same_site="strict",
                session_cookie="taxi_admin",
            ),
        )
        self.templates.env.globals["csrf_token"] = csrf_token
        # sqladmin's log-out is a GET that changes state: replaced by one that asks.
        self.admin.router.routes = [
            Route("/logout", endpoint=self.logout, name="logout", methods=["GET", "POST"])
            if getattr(route, "name", None) == "logout"
            else route
            for route in self.admin.router.routes
        ]

    @login_required
    async def index(self, request: Request) -> Response:
        services = services_of(request)
        today = await figures.today(db=services.db, positions=services.positions)
        return await self.templates.TemplateResponse(request, "home.html", {"figures": today})

    async def login(self, request: Request) -> Response:
        try:
            return await super().login(request)
        except (RateLimited, ServiceUnavailable) as exc:
            status = 429 if isinstance(exc, RateLimited) else 503
            return await self.templates.TemplateResponse(
                request, "sqladmin/login.html", {"error": exc.message}, status_code=status
            )

    async def logout(self, request: Request) -> Response:
        backend = self.authentication_backend
        assert backend is not None
        if request.method == "GET":
            if not await backend.authenticate(request):
                return RedirectResponse(request.url_for("admin:login"), 302)
            return await self.templates.TemplateResponse(request, "logout.html")
        await require_csrf(request)
        await backend.logout(request)
        return RedirectResponse(request.url_for("admin:login"), 303)


def mount_admin(app: Starlette, settings: Settings) -> Admin:
    """Mounts /admin/; `attach` gives it the services once the lifespan opened them (no
    engine exists before the app starts)."""
    admin = TaxiAdmin(app, settings)
    admin.add_view(UserAdmin)
    admin.add_view(TripAdmin)
    return admin


def attach(admin: Admin, services: Services) -> None:
    admin.session_maker.configure(bind=services.engine)
    # The admin is its own Starlette app: its requests see its state, not the main app's.
    admin.admin.state.services = services
