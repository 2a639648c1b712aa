"""The limits every log-in passes, `logIn` and `/admin/login` alike (PROTOCOL.md, "Abuse
limits"): a username over 150 characters is refused before anything is counted; then one
attempt is counted per client address (whatever usernames it tries) and per normalized
username, before the password is checked; and a process checks only a few passwords at
once (argon2id takes ~130 ms of CPU and 64 MiB each: twelve clients of random log-ins
took both cores and 350 MiB), the next waiting briefly, then SERVICE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from taxi.core.ratelimit import Limiter
from taxi.domain import usernames
from taxi.domain.errors import BadUserInput, RateLimited, ServiceUnavailable

ADDRESS_WINDOW = 60  # LOGIN_MAX_PER_ADDRESS is per minute
# Password checks at once per process: two cores, and each check is CPU-bound.
CHECKS_AT_ONCE = 2
CHECK_WAIT_SECONDS = 2.0  # how long a log-in waits for a free check before it is refused
UNKNOWN_CLIENT = "unknown"  # no peer address (an in-process test client)


@dataclass
class LoginLimits:
    """One per process (taxi.main opens it): the counters may be shared through Redis,
    the password-check slots are this process's."""

    by_name: Limiter
    by_address: Limiter
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CHECKS_AT_ONCE))
    wait: float = CHECK_WAIT_SECONDS


@dataclass(frozen=True, slots=True)
class Attempt:
    """A counted log-in attempt: its keys, to reset or refund."""

    name: str
    address: str


async def check_login_attempt(*, limits: LoginLimits, username: str, client: str | None) -> Attempt:
    """Count one log-in attempt for `username` from `client` (an address), or raise
    BadUserInput (a name no account can have) / RateLimited. Nothing is stored for
    a refused name: its length is checked before it becomes a key."""
    if len(username) > usernames.MAX_NAME:
        message = f"Ensure this field has no more than {usernames.MAX_NAME} characters."
        raise BadUserInput("Invalid input.", fields={"username": [message]})
    address = client or UNKNOWN_CLIENT
    if not await limits.by_address.allow(address):
        raise RateLimited("Too many log-in attempts from this address; try again later.")
    # Per normalized name: `CAROLx` and `carolx` are one account.
    name = usernames.normalize(username)
    if not await limits.by_name.allow(name):
        raise RateLimited("Too many failed log-in attempts; try again later.")
    return Attempt(name=name, address=address)


@asynccontextmanager
async def password_check(limits: LoginLimits) -> AsyncIterator[None]:
    """One of this process's few password-check slots, for the duration of the block."""
    try:
        async with asyncio.timeout(limits.wait):
            await limits.checks.acquire()
    except TimeoutError:
        raise ServiceUnavailable("Too many log-ins at once; try again shortly.") from None
    try:
        yield
    finally:
        limits.checks.release()


async def succeeded(*, limits: LoginLimits, attempt: Attempt) -> None:
    """The right password for this very account: its own count starts again (a success
    on any other account never touches it; the address keeps its count)."""
    await limits.by_name.reset(attempt.name)


async def refund(*, limits: LoginLimits, attempt: Attempt) -> None:
    """No password was checked (the database is down): not a guess. Counting it would
    lock the owner out for a window after the outage. (A log-in that found no free
    password check stays counted: a flood must not earn itself retries.)"""
    await limits.by_name.refund(attempt.name)
    await limits.by_address.refund(attempt.address)
