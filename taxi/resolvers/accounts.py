"""Sign-up, log-in, token rotation, log-out, and who the caller is."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi import auth
from taxi.config import Settings
from taxi.db import SessionMaker
from taxi.errors import BadUserInput, RateLimited, Unauthenticated
from taxi.models import User, UserGroup
from taxi.ratelimit import LoginLimiter
from taxi.resolvers.users import user_view
from taxi.views import UserView, media_url

USERNAME_RE = re.compile(r"^[\w.@+-]+$")
MIN_PASSWORD = 8
MAX_NAME = 150
INVALID_CREDENTIALS = "Invalid username or password"
USERNAME_TAKEN = "A user with that username already exists."

# Magic numbers of the image types we accept; the client's filename and
# Content-Type are never trusted.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


def sniff_image(data: bytes) -> str | None:
    for magic, ext in _IMAGE_SIGNATURES:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class AuthResult:
    access: str
    refresh: str
    user: UserView


def _validate_sign_up(
    *,
    username: str,
    first_name: str,
    last_name: str,
    password1: str,
    password2: str,
    photo: bytes | None,
    settings: Settings,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not username.strip():
        add("username", "This field may not be blank.")
    elif len(username) > MAX_NAME:
        add("username", f"Ensure this field has no more than {MAX_NAME} characters.")
    elif not USERNAME_RE.match(username):
        add("username", "Use only letters, digits and @/./+/-/_ characters.")
    for name, value in (("firstName", first_name), ("lastName", last_name)):
        if not value.strip():
            add(name, "This field may not be blank.")
        elif len(value) > MAX_NAME:
            add(name, f"Ensure this field has no more than {MAX_NAME} characters.")
    if len(password1) < MIN_PASSWORD:
        add(
            "password1",
            f"This password is too short. It must contain at least {MIN_PASSWORD} characters.",
        )
    elif password1.isdigit():
        add("password1", "This password is entirely numeric.")
    if password1 != password2:
        add("password2", "Passwords must match.")
    if photo is not None:
        if len(photo) > settings.max_upload_bytes:
            add("photo", f"The photo may not be larger than {settings.max_upload_bytes} bytes.")
        elif sniff_image(photo) is None:
            add("photo", "Upload a valid image (PNG, JPEG, GIF or WebP).")
    return errors


def _save_photo(settings: Settings, data: bytes) -> str:
    ext = sniff_image(data)
    rel = f"photos/{uuid.uuid4().hex}.{ext}"
    path = Path(settings.media_root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


async def sign_up(
    *,
    db: SessionMaker,
    settings: Settings,
    username: str,
    first_name: str,
    last_name: str,
    password1: str,
    password2: str,
    group: UserGroup,
    photo: bytes | None,
) -> UserView:
    username = username.strip()
    errors = _validate_sign_up(
        username=username,
        first_name=first_name,
        last_name=last_name,
        password1=password1,
        password2=password2,
        photo=photo,
        settings=settings,
    )
    async with db() as session:
        if "username" not in errors and await _find_user(session, username):
            errors["username"] = [USERNAME_TAKEN]
    if errors:
        raise BadUserInput("Invalid input.", fields=errors)

    hashed = await auth.hash_password(password1, fast=settings.password_hashing == "fast")
    rel = _save_photo(settings, photo) if photo is not None else None
    user = User(
        username=username,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        group=group,
        password=hashed,
        photo=rel,
    )
    try:
        async with db() as session, session.begin():
            session.add(user)
        async with db() as session:
            return await user_view(session, user)
    except IntegrityError as exc:
        # Lost a race with a concurrent sign-up for the same name: the unique index decided.
        if rel:
            (Path(settings.media_root) / rel).unlink(missing_ok=True)
        raise BadUserInput("Invalid input.", fields={"username": [USERNAME_TAKEN]}) from exc


async def _find_user(session: AsyncSession, username: str) -> User | None:
    return (await session.scalars(select(User).where(col(User.username) == username))).first()


async def log_in(
    *, db: SessionMaker, settings: Settings, limiter: LoginLimiter, username: str, password: str
) -> AuthResult:
    if await limiter.blocked(username):
        raise RateLimited("Too many failed log-in attempts; try again later.")
    fast = settings.password_hashing == "fast"
    async with db() as session, session.begin():
        user = await _find_user(session, username.strip())
        live = user if user is not None and user.is_active else None
        ok, new_hash = await auth.verify_password(
            password, live.password if live else None, fast=fast
        )
        if not ok or live is None:
            await limiter.failed(username)
            raise Unauthenticated(INVALID_CREDENTIALS)
        if new_hash:
            live.password = new_hash
        view = await user_view(session, live)
        pair = await auth.issue_tokens(
            session, user=live, settings=settings, photo_url=media_url(live.photo)
        )
    await limiter.reset(username)
    return AuthResult(access=pair.access, refresh=pair.refresh, user=view)


async def refresh_token(*, db: SessionMaker, settings: Settings, refresh: str) -> AuthResult:
    claims = auth.decode_token(refresh, settings=settings, token_type="refresh")
    async with db() as session, session.begin():
        if not await auth.revoke_refresh(session, jti=str(claims["jti"])):
            raise Unauthenticated("Refresh token is expired or revoked.")
        user = await session.get(User, int(claims["sub"]))
        if user is None or not user.is_active:
            raise Unauthenticated("Refresh token is expired or revoked.")
        view = await user_view(session, user)
        pair = await auth.issue_tokens(
            session, user=user, settings=settings, photo_url=media_url(user.photo)
        )
    return AuthResult(access=pair.access, refresh=pair.refresh, user=view)


async def log_out(*, db: SessionMaker, settings: Settings, refresh: str) -> bool:
    try:
        claims = auth.decode_token(refresh, settings=settings, token_type="refresh")
    except Unauthenticated:
        return False
    async with db() as session, session.begin():
        return await auth.revoke_refresh(session, jti=str(claims["jti"]))


async def authenticate(*, db: SessionMaker, settings: Settings, token: str | None) -> User:
    """The active user an access token names; Unauthenticated otherwise."""
    if not token:
        raise Unauthenticated("Authentication required.")
    claims = auth.decode_token(token, settings=settings, token_type="access")
    async with db() as session:
        user = await session.get(User, int(claims["sub"]))
    if user is None or not user.is_active:
        raise Unauthenticated("Invalid token.")
    return user


async def me(*, db: SessionMaker, user: User) -> UserView:
    async with db() as session:
        return await user_view(session, user)
