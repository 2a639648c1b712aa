"""The admin UI at `/admin/` (sqladmin): users (search, deactivate) and trips (filter by
status, read-only), for active superusers only (`taxi createsuperuser` sets `is_staff`)."""

from __future__ import annotations

import hashlib
import hmac

from sqladmin import Admin, ModelView, action
from sqladmin.authentication import AuthenticationBackend
from sqladmin.filters import StaticValuesFilter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse

from taxi.api.context import Services
from taxi.core.config import Settings
from taxi.domain import auth
from taxi.domain.models import Trip, TripStatus, User
from taxi.domain.services.accounts import _find_user as find_user
from taxi.domain.services.sessions import deactivate_user

SESSION_KEY = "staff_id"
SESSION_MAX_AGE = 8 * 3600  # an admin session lasts a working day


def session_secret(settings: Settings) -> str:
    """The session cookie's signing key: derived from JWT_SECRET, so it survives restarts
    as the tokens do, and is never the JWT key itself."""
    assert settings.jwt_secret
    return hmac.new(settings.jwt_secret.encode(), b"taxi admin session", hashlib.sha256).hexdigest()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _staff(session: AsyncSession, *, user_id: int) -> User | None:
    user = await session.get(User, user_id)
    return user if user is not None and user.is_active and user.is_staff else None


class StaffOnly(AuthenticationBackend):
    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        services = _services(request)
        fast = services.settings.password_hashing == "fast"
        async with services.db() as session:
            user = await find_user(session, username.strip())  # as logIn finds it
        staff = user if user is not None and user.is_active and user.is_staff else None
        # Verified even for a non-staff or unknown name: the time says nothing.
        ok, _ = await auth.verify_password(password, staff.password if staff else None, fast=fast)
        if not ok or staff is None:
            return False
        request.session.update({SESSION_KEY: staff.id})
        return True

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        user_id = request.session.get(SESSION_KEY)
        if not isinstance(user_id, int):
            return False
        # Checked on every request: a staff user deactivated or demoted is out at once.
        async with _services(request).db() as session:
            return await _staff(session, user_id=user_id) is not None


class UserAdmin(ModelView, model=User):
    name_plural = "Users"
    icon = "fa-solid fa-user"
    column_list = [
        "id",
        "username",
        "first_name",
        "last_name",
        "group",
        "is_active",
        "is_staff",
        "date_joined",
    ]
    column_searchable_list = ["username", "first_name", "last_name"]
    column_sortable_list = ["id", "username", "date_joined"]
    column_details_exclude_list = ["password"]
    # Accounts are made by signUp; deactivation goes through the action below, which cuts
    # the user off everywhere (an edited is_active would leave their sessions alive).
    can_create = False
    can_edit = False
    can_delete = False

    @action(
        name="deactivate",
        label="Deactivate",
        confirmation_message="Deactivate: the user is signed out everywhere and cannot log in.",
    )
    async def deactivate(self, request: Request) -> RedirectResponse:
        services = _services(request)
        for pk in request.query_params.get("pks", "").split(","):
            if pk.isdigit():
                await deactivate_user(
                    db=services.db,
                    events=services.events,
                    positions=services.positions,
                    settings=services.settings,
                    user_id=int(pk),
                )
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)


class TripAdmin(ModelView, model=Trip):
    name_plural = "Trips"
    icon = "fa-solid fa-car"
    column_list = [
        "id",
        "status",
        "pick_up_address",
        "drop_off_address",
        "rider_id",
        "driver_id",
        "rating",
        "created",
        "updated",
    ]
    column_filters = [StaticValuesFilter("status", values=[(s.value, s.value) for s in TripStatus])]
    column_searchable_list = ["pick_up_address", "drop_off_address"]
    column_sortable_list = ["created", "updated", "status"]
    column_default_sort = [("created", True)]
    # Read-only: a trip moves only through its lifecycle's mutations (one step at a time,
    # one winner, published after commit); an edit here would skip all of that.
    can_create = False
    can_edit = False
    can_delete = False


def mount_admin(app: Starlette, settings: Settings) -> Admin:
    """Mounts /admin/; `attach` gives it the services once the lifespan opened them (no
    engine exists before the app starts)."""
    sessions = async_sessionmaker(class_=AsyncSession, expire_on_commit=False)
    admin = Admin(
        app,
        session_maker=sessions,
        base_url="/admin",
        title="taxi admin",
        authentication_backend=StaffOnly(
            secret_key=session_secret(settings),
            max_age=SESSION_MAX_AGE,
            https_only=settings.production,
            same_site="strict",
            session_cookie="taxi_admin",
        ),
    )
    admin.add_view(UserAdmin)
    admin.add_view(TripAdmin)
    return admin


def attach(admin: Admin, services: Services) -> None:
    admin.session_maker.configure(bind=services.engine)
    # The admin is its own Starlette app: its requests see its state, not the main app's.
    admin.admin.state.services = services
