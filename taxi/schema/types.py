"""GraphQL object types around the read models (which are their own types:
taxi/readmodels.py): pages, edges, payloads. No SQL here."""

from __future__ import annotations

from typing import TypeAlias

import strawberry

from taxi.context import Context
from taxi.positions import Availability
from taxi.readmodels import TripView, UserView

Info: TypeAlias = strawberry.Info[Context, None]

strawberry.enum(
    Availability, name="DriverAvailability", description="Where a driver stands for dispatch."
)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class TripEdge:
    cursor: str
    node: TripView


@strawberry.type
class TripConnection:
    edges: list[TripEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class AuthPayload:
    access: str = strawberry.field(
        description=(
            "JWT access token; send as 'Authorization: Bearer <access>' or in connection_init."
        )
    )
    refresh: str = strawberry.field(
        description=(
            "JWT refresh token; single use: refreshToken returns a new one and revokes this one."
        )
    )
    user: UserView
