"""GraphQL object types around the read models (which are their own types:
taxi/domain/readmodels.py): pages, edges, payloads. No SQL here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

import strawberry

from taxi.api.context import Context
from taxi.api.schema import readtypes  # noqa: F401 - the read models become object types
from taxi.domain.positions import Availability
from taxi.domain.readmodels import TripView, UserView

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


# `@strawberry.field(description=...)` is typed as returning Any, which strict mypy
# reports as an untyped decorator (strawberry#1929, open). These say what it does: the
# resolver, registered as a field of that kind, with its description.
F = TypeVar("F", bound=Callable[..., Any])


def field(*, description: str) -> Callable[[F], F]:
    decorator: Callable[[F], F] = strawberry.field(description=description)
    return decorator


def mutation(*, description: str) -> Callable[[F], F]:
    decorator: Callable[[F], F] = strawberry.mutation(description=description)
    return decorator


def subscription(*, description: str) -> Callable[[F], F]:
    decorator: Callable[[F], F] = strawberry.subscription(description=description)
    return decorator
