"""Access tokens verified once are remembered (taxi/domain/auth.py), never past their expiry,
and only for the secret and type they were verified with."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from taxi.core.config import Settings
from taxi.domain import auth
from taxi.domain.errors import Unauthenticated

SECRET = "s" * 48


def mint(*, seconds: float, secret: str = SECRET, token_type: str = "access") -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": "7",
        "sid": uuid.uuid4().hex,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + timedelta(seconds=seconds),
        "token_type": token_type,
    }
    return jwt.encode(claims, secret, algorithm=auth.ALGORITHM)


def decode(token: str, *, secret: str = SECRET, token_type: str = "access") -> dict[str, object]:
    settings = Settings(jwt_secret=secret, database_url="sqlite+aiosqlite://", redis_url=None)
    return auth.decode_token(token, settings=settings, token_type=token_type)


def test_a_remembered_token_is_refused_once_expired() -> None:
    token = mint(seconds=1)
    exp = decode(token)["exp"]
    assert decode(token)["sub"] == "7"  # remembered
    assert isinstance(exp, int)
    deadline = time.monotonic() + 5
    while time.time() <= exp:  # the clock itself is what this test waits for
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.05)
    with pytest.raises(Unauthenticated, match=r"Token has expired\."):
        decode(token)


def test_a_remembered_token_holds_only_for_its_secret_and_type() -> None:
    token = mint(seconds=60)
    assert decode(token)["sub"] == "7"
    with pytest.raises(Unauthenticated, match=r"Invalid token\."):
        decode(token, secret="t" * 48)
    with pytest.raises(Unauthenticated, match=r"Invalid token\."):
        decode(token, token_type="refresh")


def test_callers_get_their_own_copy() -> None:
    token = mint(seconds=60)
    decode(token)["sub"] = "8"
    assert decode(token)["sub"] == "7"
