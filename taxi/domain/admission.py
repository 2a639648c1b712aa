"""Admission of new work: the operations a saturated process turns away at once.

PROTOCOL.md "Overload": new `requestTrip`, `signUp`, `logIn` and `estimateFare` get
SERVICE_UNAVAILABLE with `retryAfter` while queued work would take longer than
OVERLOAD_QUEUE_SECONDS to drain (taxi.core.overload measures it). They start something
(a trip to dispatch, a password hash, a session) and a client can come back later;
what was already accepted (accepts, status steps, cancels, ratings, position reports)
is never turned away, or a trip under way would break. Each of the four calls `admit`
first, before any other work (a shed request must cost next to nothing)."""

from __future__ import annotations

from typing import Literal

from taxi.core import metrics
from taxi.core.overload import LOAD
from taxi.domain.errors import Overloaded

Sheddable = Literal["requestTrip", "signUp", "logIn", "estimateFare"]


def admit(operation: Sheddable) -> None:
    """Raises Overloaded (counted in /metrics as taxi_shed) when the process is saturated."""
    seconds = LOAD.retry_after()
    if seconds is not None:
        metrics.shed(operation)
        raise Overloaded(retry_after=seconds)
