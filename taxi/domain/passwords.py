"""The password policy: long enough, not common, not the username."""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

from taxi.domain.usernames import normalize

MIN_LENGTH = 10
# passlib refuses longer secrets (PasswordSizeError); argon2 has no use for more.
MAX_LENGTH = 4096
_COMMON = "common-passwords.txt.gz"  # see taxi/data/README.md for its origin


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    data = resources.files("taxi.data").joinpath(_COMMON).read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


def problems(password: str, *, username: str) -> list[str]:
    """What is wrong with `password` as a new password for `username` (empty: fine)."""
    if len(password) < MIN_LENGTH:
        return [f"This password is too short. It must contain at least {MIN_LENGTH} characters."]
    if len(password) > MAX_LENGTH:
        return [f"Ensure this password has no more than {MAX_LENGTH} characters."]
    found = []
    if password.strip().lower() in common_passwords():
        found.append("This password is too common.")
    if normalize(password) == normalize(username):
        found.append("The password may not be the username.")
    if not password.strip():
        found.append("This password may not be blank.")
    return found
