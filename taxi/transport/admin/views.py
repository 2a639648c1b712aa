"""The admin's pages over the tables: users (search; Deactivate and Reactivate, each a
POST with the session's CSRF token, each followed by a message saying what happened) and
trips (filter by status, with the rider's and driver's names; read-only)."""

from __future__ import annotations

from typing import Any

from sqladmin import ModelView, expose
from sqladmin.filters import StaticValuesFilter
from sqladmin.flash import Flash
from starlette.requests import Request
from starlette.responses import RedirectResponse

from taxi.domain.models import Trip, TripStatus, User
from taxi.domain.services.sessions import deactivate_user, reactivate_user
from taxi.transport.admin.staff import require_csrf, services_of


def person(user: User | None) -> str:
    """A rider or driver as a list shows them: the name people use, then the username
    (names are not unique). Empty for a deleted account."""
    if user is None:
        return ""
    name = f"{user.first_name} {user.last_name}".strip()
    return f"{name} ({user.username})" if name and name != user.username else user.username


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
    column_details_exclude_list = ["password", "username_key"]
    details_template = "user_details.html"
    # Accounts are made by signUp; deactivation goes through the actions below, which cut
    # the user off everywhere (an edited is_active would leave their sessions alive).
    can_create = False
    can_edit = False
    can_delete = False

    async def _change(self, request: Request, *, deactivate: bool) -> RedirectResponse:
        await require_csrf(request)
        services = services_of(request)
        pk = request.path_params["pk"]
        user_id = int(pk) if pk.isdigit() else -1
        if deactivate:
            found = await deactivate_user(
                db=services.db,
                events=services.events,
                positions=services.positions,
                settings=services.settings,
                user_id=user_id,
            )
            done = "deactivated: signed out everywhere, open trips ended, can no longer log in"
        else:
            found = await reactivate_user(db=services.db, user_id=user_id)
            done = "reactivated: can log in again (old sessions stay ended)"
        if not found:
            Flash.error(request, f"No user {pk}: nothing changed.")
            return RedirectResponse(request.url_for("admin:list", identity=self.identity), 303)
        async with services.db() as session:
            user = await session.get(User, user_id)
        Flash.success(request, f"{person(user)} {done}.")
        url = request.url_for("admin:details", identity=self.identity, pk=user_id)
        return RedirectResponse(url, 303)  # 303: the browser GETs the page, never re-POSTs

    @expose("/{pk}/deactivate", methods=["POST"])
    async def deactivate(self, request: Request) -> RedirectResponse:
        return await self._change(request, deactivate=True)

    @expose("/{pk}/reactivate", methods=["POST"])
    async def reactivate(self, request: Request) -> RedirectResponse:
        return await self._change(request, deactivate=False)


def price(trip: Trip) -> str:
    """What the rider pays (once known), else the price held by the quote; minor units
    shown as the currency's amount."""
    if trip.fare_final is not None:
        return f"{trip.fare_final / 100:.2f} {trip.fare_currency}"
    if trip.fare_quoted is not None:
        return f"{trip.fare_quoted / 100:.2f} {trip.fare_currency} (quoted)"
    return ""


def _price(trip: Any, _attribute: Any) -> str:
    return price(trip)


def _reason(trip: Any, _attribute: Any) -> str:
    return trip.cancel_reason.value if trip.cancel_reason is not None else ""


def _rider(trip: Any, _attribute: Any) -> str:
    return person(trip.rider)


def _driver(trip: Any, _attribute: Any) -> str:
    return person(trip.driver)


class TripAdmin(ModelView, model=Trip):
    name_plural = "Trips"
    icon = "fa-solid fa-car"
    column_list = [
        "created",
        "status",
        "rider",
        "driver",
        "fare_final",
        "cancel_reason",
        "pick_up_address",
        "drop_off_address",
        "rating",
        "updated",
        "id",
    ]
    column_labels = {"fare_final": "Price", "cancel_reason": "Cancel reason"}
    column_formatters = {
        "rider": _rider,
        "driver": _driver,
        "fare_final": _price,
        "cancel_reason": _reason,
    }
    column_formatters_detail = column_formatters
    column_details_exclude_list = [
        "driver_latitude",
        "driver_longitude",
        "driver_heading",
        "driver_located_at",
    ]
    column_filters = [StaticValuesFilter("status", values=[(s.value, s.value) for s in TripStatus])]
    column_searchable_list = ["pick_up_address", "drop_off_address"]
    column_sortable_list = ["created", "updated", "status"]
    column_default_sort = [("created", True)]
    # Long addresses wrap instead of running off the page.
    list_template = "trip_list.html"
    # Read-only: a trip moves only through its lifecycle's mutations (one step at a time,
    # one winner, published after commit); an edit here would skip all of that.
    can_create = False
    can_edit = False
    can_delete = False
