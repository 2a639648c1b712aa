"""Usernames: one normal form, so `Ada`, `ada` and full-width `Ada` are one account."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 150
# After NFKC and case folding: ASCII only, so no look-alike letters from other scripts
# (a Cyrillic a beside the Latin one) can make a second account that reads the same.
_ALLOWED = re.compile(r"[a-z0-9@.+_-]+")


def normalize(username: str) -> str:
    """The key two names collide on (NFKC, then case folding). Not validated."""
    return unicodedata.normalize("NFKC", username.strip()).casefold()


def problem(username: str) -> str | None:
    """Why `username` cannot be registered, or None."""
    if not username.strip():
        return "This field may not be blank."
    if len(username) > MAX_NAME:
        return f"Ensure this field has no more than {MAX_NAME} characters."
    key = normalize(username)
    if len(key) > MAX_NAME or not _ALLOWED.fullmatch(key):
        return "Use only ASCII letters, digits and @/./+/-/_ characters."
    return None
