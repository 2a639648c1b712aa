"""Waiting in tests: poll a probe until it holds, within a deadline, and fail loudly
(with what was awaited and the last value seen) when it does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# How long any one wait may take: generous (helpers share two cores); nothing measures it.
WAIT = 15.0
# How long a server or process may take to start (or restart).
START = 30.0
POLL = 0.05  # the polling interval of `eventually`


def _truthy(value: object) -> bool:
    return bool(value)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = _truthy,
    *,
    within: float = WAIT,
    what: str = "never happened",
    every: float = POLL,
) -> T:
    """Calls `probe` until `done(value)` holds; returns that value. Past `within`
    seconds it raises AssertionError naming `what` and the last value."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s; last: {value!r}")
        await asyncio.sleep(every)  # the polling interval, not a synchronisation
