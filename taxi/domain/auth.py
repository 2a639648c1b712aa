"""Passwords, JWTs, refresh-token rotation, and the token in a WebSocket connection_init."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import jwt
from passlib.context import CryptContext
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import affected
from taxi.domain.errors import Unauthenticated
from taxi.domain.models import RefreshToken, User, utcnow
from taxi.domain.passwords import MAX_LENGTH as MAX_PASSWORD

T = TypeVar("T")
ALGORITHM = "HS256"
# `sid`: the session (family) a token belongs to; see taxi/domain/services/sessions.py.
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "token_type", "sid"]

# Tests may ask for cheap parameters; production always gets argon2's defaults.
_FAST_ARGON2 = {"argon2__memory_cost": 1024, "argon2__time_cost": 1, "argon2__parallelism": 1}


@lru_cache(maxsize=2)
def password_context(fast: bool = False) -> CryptContext:
    # argon2id: salted and memory-hard. `deprecated="auto"` plus the parameters here make
    # verify_and_update() flag hashes made with other parameters, so log-in rehashes them.
    return CryptContext(schemes=["argon2"], deprecated="auto", **(_FAST_ARGON2 if fast else {}))


@lru_cache(maxsize=2)
def _dummy_hash(fast: bool) -> str:
    hashed: str = password_context(fast).hash(uuid.uuid4().hex)  # passlib is untyped
    return hashed


# Hashes run on threads of their own at a lower CPU priority: a hash costs ~130 ms of
# CPU on four argon2 lanes, and a flood of log-ins on equal terms took the cores from the
# event loop (/healthz at 0.5-1 s). On Linux the nice value is per thread and argon2's
# lane threads inherit it, so hashing gets what the loop leaves. As many threads as a
# process checks passwords at once (taxi/domain/logins.py).
HASHING_THREADS = 2
HASHING_NICE = 10


def _lower_priority() -> None:
    with suppress(OSError, AttributeError):  # not Linux, or not allowed: equal terms
        os.setpriority(os.PRIO_PROCESS, 0, HASHING_NICE)  # 0: this thread, on Linux


_hashing = ThreadPoolExecutor(
    max_workers=HASHING_THREADS, thread_name_prefix="taxi-hash", initializer=_lower_priority
)


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, fn, *args)


async def hash_password(password: str, *, fast: bool = False) -> str:
    # argon2 releases the GIL: the loop stays free while a thread hashes.
    hashed: str = await _off_loop(password_context(fast).hash, password)
    return hashed


def _verify(password: str, hashed: str | None, fast: bool) -> tuple[bool, str | None]:
    ctx = password_context(fast)
    if hashed is None or len(password) > MAX_PASSWORD:
        # Unknown user, or a password no account can have (passlib refuses it, which
        # was a 500 for unknown users only): pay for one verification anyway, so
        # neither the answer nor its timing tells whether the user exists.
        ctx.verify(password[:MAX_PASSWORD], _dummy_hash(fast))
        return False, None
    try:
        verdict: tuple[bool, str | None] = ctx.verify_and_update(password, hashed)
        return verdict
    except (ValueError, TypeError):
        return False, None


async def verify_password(
    password: str, hashed: str | None, *, fast: bool = False
) -> tuple[bool, str | None]:
    """(ok, new_hash_or_None)."""
    return await _off_loop(_verify, password, hashed, fast)


def user_claims(user: User, media_url: str | None) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "group": user.group.value,
        "photo": media_url,
    }


def _encode(claims: dict[str, Any], settings: Settings) -> str:
    assert settings.jwt_secret
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


async def issue_tokens(
    session: AsyncSession, *, user: User, settings: Settings, photo_url: str | None, sid: str
) -> TokenPair:
    """Adds the refresh token's row to `session`; the caller commits. `sid` is the
    session (family) both tokens belong to."""
    assert user.id is not None
    now = utcnow()
    base = {"sub": str(user.id), "iat": now, "sid": sid}
    access = _encode(
        {
            **user_claims(user, photo_url),
            **base,
            "token_type": "access",
            "jti": uuid.uuid4().hex,
            "exp": now + timedelta(seconds=settings.access_token_ttl),
        },
        settings,
    )
    jti = uuid.uuid4().hex
    expires = now + timedelta(seconds=settings.refresh_token_ttl)
    refresh = _encode(
        {**base, "token_type": "refresh", "jti": jti, "exp": expires},
        settings,
    )
    session.add(RefreshToken(jti=jti, user_id=user.id, session_id=sid, expires_at=expires))
    return TokenPair(access=access, refresh=refresh)


# Claims of tokens verified already, by token, secret and type (oldest dropped first): a
# client sends the same access token with every request until it expires, and verifying
# it again (base64, JSON, HMAC) cost a tenth of a small read. Expiry is checked on every
# use: an expired token is verified afresh, which refuses it as before.
MAX_VERIFIED = 4096
_verified: dict[tuple[str, str, str], dict[str, Any]] = {}


def decode_token(token: str, *, settings: Settings, token_type: str) -> dict[str, Any]:
    """Verified claims, or Unauthenticated. Only HS256 is accepted (no `alg: none`)."""
    assert settings.jwt_secret
    key = (token, settings.jwt_secret, token_type)
    claims = _verified.get(key)
    if claims is None or claims["exp"] <= time.time():
        claims = _verified_claims(token, secret=settings.jwt_secret, token_type=token_type)
        if len(_verified) >= MAX_VERIFIED:
            del _verified[next(iter(_verified))]
        _verified[key] = claims
    return dict(claims)  # the caller's own copy


def _verified_claims(token: str, *, secret: str, token_type: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("Token has expired.") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("Invalid token.") from exc
    if claims.get("token_type") != token_type:
        raise Unauthenticated("Invalid token.")
    try:
        int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise Unauthenticated("Invalid token.") from exc
    if not isinstance(claims["sid"], str):
        raise Unauthenticated("Invalid token.")
    return claims


async def revoke_refresh(session: AsyncSession, *, jti: str) -> bool:
    """Revoke one live refresh token. The conditional UPDATE is atomic in the database,
    so of two processes presenting the same token at once exactly one sees rowcount 1."""
    now = utcnow()
    statement = (
        update(RefreshToken)
        .where(
            col(RefreshToken.jti) == jti,
            col(RefreshToken.revoked_at).is_(None),
            col(RefreshToken.expires_at) > now,
        )
        .values(revoked_at=now)
    )
    return bool(await affected(session, statement))


_TOKEN_KEYS = ("authToken", "token", "Authorization", "authorization")


def token_from_connection_params(params: object) -> str | None:
    """The access token from a connection_init payload (GraphiQL sends its Headers tab)."""
    if not isinstance(params, dict):
        return None
    sources = [params]
    # Some clients nest headers: {"headers": {"Authorization": "..."}}.
    if isinstance(params.get("headers"), dict):
        sources.append(params["headers"])
    for source in sources:
        for key in _TOKEN_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return strip_bearer(value)
    return None


def strip_bearer(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return value


def expires_at(claims: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(claims["exp"]), UTC)
