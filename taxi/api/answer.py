"""What the executor hands a transport back (taxi/api/executor.py): an operation's
answer, or the one error that means "not something this transport can run"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from taxi.api.resolvers.subscriptions import Live
from taxi.api.strategies.live import LiveQuery
from taxi.domain.errors import AppError

OK = "OK"


class BadRequest(AppError):
    """The request names no operation this transport can run (HTTP: a 400 response)."""

    code = "BAD_REQUEST"


@dataclass(slots=True)
class Answer:
    data: dict[str, Any] | None
    errors: list[GraphQLError] | None  # with their codes
    status: int = 200  # the HTTP status it calls for
    executed: bool = True  # False: refused before running (a WebSocket `error` message)
    no_store: bool = False  # a persisted-document miss: never cached
    live: tuple[Live[Any], LiveQuery] | None = None  # an opened subscription


def first_code(errors: list[GraphQLError] | None) -> str:
    """The first (alphabetically) code of `errors`, or OK."""
    if not errors:
        return OK  # nearly every answer: no set, no sort
    codes = sorted({str((e.extensions or {}).get("code", "ERROR")) for e in errors or ()})
    return codes[0] if codes else OK
