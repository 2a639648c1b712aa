"""Sign-up, log-in, token rotation, log-out, and who the caller is."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from taxi.core.config import Settings
from taxi.core.db import SessionMaker
from taxi.core.ratelimit import Limiter
from taxi.domain import auth, logins, passwords, photos, usernames
from taxi.domain.errors import BadUserInput, RateLimited, Unauthenticated
from taxi.domain.events import Publisher
from taxi.domain.logins import LoginLimits
from taxi.domain.models import User, UserGroup
from taxi.domain.readmodels import UserView, media_url
from taxi.domain.services import sessions
from taxi.domain.services.users import user_view

MAX_NAME = 150
INVALID_CREDENTIALS = "Invalid username or password"
USERNAME_TAKEN = "A user with that username already exists."
SESSION_ENDED = "Refresh token is expired or revoked."


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

    if (problem := usernames.problem(username)) is not None:
        add("username", problem)
    for name, value in (("firstName", first_name), ("lastName", last_name)):
        if not value.strip():
            add(name, "This field may not be blank.")
        elif len(value) > MAX_NAME:
            add(name, f"Ensure this field has no more than {MAX_NAME} characters.")
    for message in passwords.problems(password1, username=username):
        add("password1", message)
    if password1 != password2:
        add("password2", "Passwords must match.")
    if photo is not None and len(photo) > settings.max_upload_bytes:
        add("photo", f"The photo may not be larger than {settings.max_upload_bytes} bytes.")
    return errors


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
    signups: Limiter,
    limits: LoginLimits,
    client: str | None,
) -> UserView:
    username = username.strip()
    if not await signups.allow(client or "unknown"):
        raise RateLimited("Too many sign-ups from this address; try again later.")
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
    image = None
    if photo is not None and "photo" not in errors:
        try:
            image = await photos.reencode(photo)
        except photos.NotAnImage as exc:
            errors["photo"] = [str(exc)]
    if errors:
        raise BadUserInput("Invalid input.", fields=errors)

    # A hash costs what a check does (argon2id, 64 MiB): it takes one of the same slots.
    async with logins.password_check(limits):
        hashed = await auth.hash_password(password1, fast=settings.password_hashing == "fast")
    rel = photos.save(settings.media_root, image) if image is not None else None
    user = User(
        username=username,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        group=group,
        password=hashed,
        photo=rel,
    )
    committed = False
    try:
        async with db() as session, session.begin():
            session.add(user)
        committed = True
    except IntegrityError as exc:
        # Lost a race with a concurrent sign-up for the same name: the unique index decided.
        raise BadUserInput("Invalid input.", fields={"username": [USERNAME_TAKEN]}) from exc
    finally:
        # A sign-up that failed in any way (a race, an outage, a cancelled request)
        # leaves no file behind.
        if rel and not committed:
            photos.remove(settings.media_root, rel)
    async with db() as session:
        return await user_view(session, user)


async def _find_user(session: AsyncSession, username: str) -> User | None:
    key = usernames.normalize(username)
    return (await session.scalars(select(User).where(col(User.username_key) == key))).first()


async def verify_credentials(
    *,
    db: SessionMaker,
    settings: Settings,
    limits: LoginLimits,
    username: str,
    password: str,
    client: str | None,
) -> User:
    """The active user this username and password name, under the log-in limits that
    logIn and the admin's log-in share (taxi/domain/logins.py): counted before the hash
    is checked, so concurrent attempts cannot all slip under them. Unauthenticated,
    RateLimited, BadUserInput or ServiceUnavailable otherwise."""
    attempt = await logins.check_login_attempt(limits=limits, username=username, client=client)
    fast = settings.password_hashing == "fast"
    looked_up = False
    try:
        # No connection is held during the ~130 ms hash.
        async with db() as session:
            user = await _find_user(session, username)
        looked_up = True
    finally:
        if not looked_up:  # the database is down: no password was checked, not a guess
            await logins.refund(limits=limits, attempt=attempt)
    live = user if user is not None and user.is_active else None
    # Still counted when no slot frees up in time: a flood must not earn itself retries.
    async with logins.password_check(limits):
        ok, new_hash = await auth.verify_password(
            password, live.password if live else None, fast=fast
        )
    if not ok or live is None or live.id is None:
        raise Unauthenticated(INVALID_CREDENTIALS)
    if new_hash:
        async with db() as session, session.begin():
            live.password = new_hash
            session.add(live)  # detached since the look-up: attach it for the UPDATE
    await logins.succeeded(limits=limits, attempt=attempt)
    return live


async def log_in(
    *,
    db: SessionMaker,
    settings: Settings,
    limits: LoginLimits,
    username: str,
    password: str,
    client: str | None,
) -> AuthResult:
    live = await verify_credentials(
        db=db, settings=settings, limits=limits, username=username, password=password, client=client
    )
    assert live.id is not None  # verified users are stored ones
    async with db() as session, session.begin():
        view = await user_view(session, live)
        sid = await sessions.start(session, user_id=live.id)
        pair = await auth.issue_tokens(
            session, user=live, settings=settings, photo_url=media_url(live.photo), sid=sid
        )
    return AuthResult(access=pair.access, refresh=pair.refresh, user=view)


async def refresh_token(
    *, db: SessionMaker, events: Publisher, settings: Settings, refresh: str
) -> AuthResult:
    claims = auth.decode_token(refresh, settings=settings, token_type="refresh")
    jti, sid, user_id = str(claims["jti"]), str(claims["sid"]), int(claims["sub"])
    async with db() as session, session.begin():
        if await auth.revoke_refresh(session, jti=jti):
            user = await sessions.load_signed_in(session, user_id=user_id, sid=sid)
            if user is not None:
                view = await user_view(session, user)
                pair = await auth.issue_tokens(
                    session, user=user, settings=settings, photo_url=media_url(user.photo), sid=sid
                )
                return AuthResult(access=pair.access, refresh=pair.refresh, user=view)
            replayed = None
        else:
            # Used before: the token was stolen or the client is confused. Either way
            # the whole family (every token of this log-in) ends.
            replayed = await sessions.family_of_used_token(session, jti=jti)
            if replayed is not None:
                await sessions.revoke(session, sid=replayed)
    if replayed is not None:
        await events.session_ended(user_id=user_id, sid=replayed)
    raise Unauthenticated(SESSION_ENDED)


async def log_out(*, db: SessionMaker, events: Publisher, settings: Settings, refresh: str) -> bool:
    """Ends the refresh token's session: the token, and within a second the session's
    access tokens and open sockets in every process."""
    try:
        claims = auth.decode_token(refresh, settings=settings, token_type="refresh")
    except Unauthenticated:
        return False
    async with db() as session, session.begin():
        live = await auth.revoke_refresh(session, jti=str(claims["jti"]))
        if live:
            await sessions.revoke(session, sid=str(claims["sid"]))
    if live:
        await events.session_ended(user_id=int(claims["sub"]), sid=str(claims["sid"]))
    return live


async def authenticate(
    *, db: SessionMaker, settings: Settings, token: str | None, session: AsyncSession | None = None
) -> User:
    """The active user of a live session an access token names; Unauthenticated
    otherwise. One indexed query (user and session by primary key), in `session` when
    the caller has one open for its own reads."""
    if not token:
        raise Unauthenticated("Authentication required.")
    claims = auth.decode_token(token, settings=settings, token_type="access")
    user_id, sid = int(claims["sub"]), str(claims["sid"])
    if session is not None:
        user = await sessions.load_signed_in(session, user_id=user_id, sid=sid)
    else:
        async with db() as own:
            user = await sessions.load_signed_in(own, user_id=user_id, sid=sid)
    if user is None:
        raise Unauthenticated("Invalid token.")
    return user


async def me(*, db: SessionMaker, user: User) -> UserView:
    async with db() as session:
        return await user_view(session, user)
