"""Admission of new work: the operations a saturated process turns away at once.

PROTOCOL.md "Overload": new `requestTrip`, `signUp`, `logIn` and `estimateFare` get
SERVICE_UNAVAILABLE with `retryAfter` while queued work would take longer than
OVERLOAD_QUEUE_SECONDS to drain (taxi.core.overload measures it). They start something
(a trip to dispatch, a password hash, a session) and a client can come back later;
what was already accepted (accepts, status steps, cancels, ratings, position reports)
is never turned away, or a trip under way would break. Each of the four calls `admit`
first, before any other work (a shed request must cost next to nothing); over a socket the
executor turns such an operation away as its frame arrives (`refusal`, Executor.submit),
without a task or a loop pass more."""

from __future__ import annotations

from typing import Literal, get_args

from taxi.core import metrics
from taxi.core.overload import LOAD
from taxi.domain.errors import Overloaded

Sheddable = Literal["requestTrip", "signUp", "logIn", "estimateFare"]
SHEDDABLE: frozenset[str] = frozenset(get_args(Sheddable))


def refusal(operation: str) -> Overloaded | None:
    """The refusal of a new `operation` (counted in /metrics as taxi_shed) while the
    process is saturated, else None."""
    seconds = LOAD.retry_after()
    if seconds is None:
        return None
    metrics.shed(operation)
    return Overloaded(retry_after=seconds)


def admit(operation: Sheddable) -> None:
    """Raises `refusal`'s Overloaded when the process is saturated."""
    if (refused := refusal(operation)) is not None:
        raise refused
