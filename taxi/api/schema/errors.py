"""Every error leaves with `extensions.code` (PROTOCOL.md's table).

Domain errors carry their code; database and backend outages become
SERVICE_UNAVAILABLE; anything else is a bug: logged with its traceback and, in
production, masked. Pre-execution failures also turn the HTTP status into 400."""

from __future__ import annotations

import logging
import re
import traceback

import asyncpg
from graphql import GraphQLError, GraphQLSyntaxError
from redis.exceptions import RedisClusterException, RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from taxi.domain.errors import AppError, ServiceUnavailable

log = logging.getLogger("taxi.domain.errors")

# Codes that, on an error with no path, mean the request never executed: HTTP 400.
PRE_EXECUTION_CODES = {
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_REQUEST",
    "BAD_USER_INPUT",
}


# asyncpg's errors for a server that is starting up or shutting down, full, or gone. When
# SQLAlchemy wraps one (as the __cause__ of a DBAPIError's `orig`), its message, e.g. "the
# database system is shutting down", names no connection: the type is what tells.
_ASYNCPG_OUTAGES = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03 "the database system is starting up"
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, _ASYNCPG_OUTAGES):
        return True
    if isinstance(exc, DBAPIError):
        # Connection-level failures only; a constraint violation is a bug, not an outage.
        return (
            bool(exc.connection_invalidated)
            or isinstance(exc.orig, (OSError, ConnectionError))
            or isinstance(getattr(exc.orig, "__cause__", None), _ASYNCPG_OUTAGES)
            or "connect" in type(exc.orig).__name__.lower()
            or _is_outage_text(str(exc.orig))
        )
    # RedisClusterException (a slot without an owner mid-failover) is not a RedisError.
    outages = (OSError, TimeoutError, PoolTimeout, RedisError, RedisClusterException)
    return isinstance(exc, outages)


def _is_outage_text(text: str) -> bool:
    text = text.lower()
    return any(s in text for s in ("connection", "terminat", "shutdown", "timeout", "closed"))


def classify(error: GraphQLError) -> tuple[str, str, dict[str, object]]:
    """(code, message, extra extensions) for one error."""
    original = error.original_error
    if isinstance(original, AppError):
        return original.code, original.message, original.extensions
    if original is None:
        ext = dict(error.extensions or {})
        if "code" in ext:
            return str(ext["code"]), error.message, ext
        if isinstance(error, GraphQLSyntaxError):
            return "GRAPHQL_PARSE_FAILED", error.message, {}
        if error.message.startswith("Variable '$"):
            return "BAD_USER_INPUT", error.message, {}
        return "GRAPHQL_VALIDATION_FAILED", error.message, {}
    if isinstance(original, GraphQLError):
        return classify(original)
    if is_outage(original):
        log.warning("backend unavailable: %r", original)
        return ServiceUnavailable.code, ServiceUnavailable.default_message, {}
    if isinstance(original, SQLAlchemyError):
        # Its text is SQL, and the driver's detail may quote values ("Key (username)=
        # (...) already exists"): neither goes to the client, in development either, nor
        # to the log, which gets the type and where it was raised.
        kind = type(getattr(original, "orig", None) or original).__name__
        frames = "".join(traceback.format_tb(original.__traceback__))
        log.error("internal database error (%s) in %s\n%s", kind, error.path, frames)
        return "INTERNAL_SERVER_ERROR", f"Database error ({kind}).", {}
    log.error("internal error in %s", error.path, exc_info=original)
    return "INTERNAL_SERVER_ERROR", str(original) or type(original).__name__, {}


# graphql-core's suggestions ("Cannot query field 'pasword' on type 'User'. Did you
# mean 'password'?") map the schema for anyone when introspection is off.
_SUGGESTION = re.compile(r" Did you mean .*\?$", re.DOTALL)


def with_codes(errors: list[GraphQLError], *, mask_internal: bool) -> list[GraphQLError]:
    """`mask_internal` (production) also drops field suggestions."""
    out = []
    for error in errors:
        if error.extensions and "code" in error.extensions:
            out.append(error)  # already classified
            continue
        code, message, ext = classify(error)
        if code == "INTERNAL_SERVER_ERROR" and mask_internal:
            message = "Internal server error."
        if mask_internal:
            message = _SUGGESTION.sub("", message)
        out.append(
            GraphQLError(
                message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={**ext, "code": code},
            )
        )
    return out
