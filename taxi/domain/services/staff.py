"""Staff accounts (`taxi createsuperuser`): the admin's users, under the sign-up rules for
names and passwords, and neither riders' nor drivers' work.

A staff user is stored in the rider group: every account needs a group, and a driver's
would put the admin into dispatch (offers, `nearbyCars`, the drivers-online figure)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from taxi.core.db import SessionMaker
from taxi.domain import auth, passwords, usernames
from taxi.domain.errors import BadUserInput
from taxi.domain.models import User, UserGroup
from taxi.domain.services.accounts import USERNAME_TAKEN, _find_user


def problems(*, username: str, password: str, again: str) -> list[str]:
    """Why these cannot make a staff user, as sentences for a terminal (none: they can)."""
    found = []
    if (name := usernames.problem(username)) is not None:
        found.append(f"Username: {name}")
    found += [f"Password: {problem}" for problem in passwords.problems(password, username=username)]
    if password != again:
        found.append("Password: the two entries differ.")
    return found


async def create_staff(
    *, db: SessionMaker, username: str, password: str, fast_hashing: bool = False
) -> User:
    """A new active staff user; BadUserInput (with `fields`) when the name is taken or the
    name or password breaks the rules."""
    username = username.strip()
    wrong = problems(username=username, password=password, again=password)
    if wrong:
        raise BadUserInput("Invalid input.", fields={"staff": wrong})
    async with db() as session:
        if await _find_user(session, username) is not None:
            raise BadUserInput("Invalid input.", fields={"username": [USERNAME_TAKEN]})
    user = User(
        username=username,
        first_name=username,
        last_name="",
        group=UserGroup.RIDER,
        password=await auth.hash_password(password, fast=fast_hashing),
        is_staff=True,
    )
    try:
        async with db() as session, session.begin():
            session.add(user)
    except IntegrityError as exc:
        # Created meanwhile by someone else: the unique index decided.
        raise BadUserInput("Invalid input.", fields={"username": [USERNAME_TAKEN]}) from exc
    return user
