"""Limits on what a request's variables may hold, checked before graphql-core coerces
them: a 600,000-item list variable cost seconds of coercion (and then broke asyncpg's
32,767-parameter limit), and a NUL byte reached the database as a 500 with the SQL.

The scan walks the decoded JSON once and stops at the first excess, so refusing a huge
input costs about as much as looking at its first 100 items."""

from __future__ import annotations

from typing import Any

MAX_LIST_ITEMS = 100
MAX_VARIABLES_BYTES = 64 * 1024
# What a number, boolean or null, and the punctuation around any value, count for.
_SCALAR_BYTES = 8
BAD_TEXT = "Text may not contain NUL characters or unpaired surrogates."


def bad_text(value: str) -> bool:
    """A NUL (PostgreSQL cannot store it) or a lone surrogate (no UTF-8 for it)."""
    if "\x00" in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def problem(variables: object) -> str | None:
    """Why `variables` are refused (BAD_USER_INPUT), or None."""
    if variables is None:
        return None
    size = 0
    stack: list[Any] = [variables]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            size += len(value) + _SCALAR_BYTES
            if bad_text(value):
                return BAD_TEXT
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                return f"A list may hold at most {MAX_LIST_ITEMS} items."
            size += _SCALAR_BYTES
            stack.extend(value)
        elif isinstance(value, dict):
            size += _SCALAR_BYTES
            for key, item in value.items():
                size += len(key) + _SCALAR_BYTES
                if bad_text(key):
                    return BAD_TEXT
                stack.append(item)
        else:
            size += _SCALAR_BYTES
        if size > MAX_VARIABLES_BYTES:
            return f"The variables may take at most {MAX_VARIABLES_BYTES} bytes."
    return None
