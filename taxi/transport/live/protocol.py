"""The two GraphQL-over-WebSocket subprotocols: names, close codes, message checks and
the frames the server sends.

`graphql-transport-ws` (the graphql-ws library; its PROTOCOL.md) and the legacy
`graphql-ws` (subscriptions-transport-ws). Written here rather than borrowed from
Strawberry's handlers: those are private classes, and patching them tied the service
to one Strawberry release (PROTOCOL.md of this repo, "Subscriptions")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

TRANSPORT = "graphql-transport-ws"
LEGACY = "graphql-ws"

# Close codes: RFC 6455, then the graphql-transport-ws ones.
NORMAL = 1000
GOING_AWAY = 1001  # shutdown: reconnect, to another process
SHUTDOWN_REASON = "Server shutting down"  # GOING_AWAY's reason
UNSUPPORTED_DATA = 1002  # legacy: a binary frame (as subscriptions-transport-ws)
INTERNAL_ERROR = 1011  # legacy: after connection_error
TRY_AGAIN_LATER = 1013  # an outage while connection_init authenticated
BAD_REQUEST = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408
DUPLICATE_ID = 4409
TOO_MANY = 4429  # a second connection_init, or over MAX_SOCKETS_PER_USER

# An operation id is kept per subscription and echoed in every frame: a client-chosen
# 60 KB id cost ~120 KB per subscription and CPU per event (PROTOCOL.md: at most 128).
MAX_ID_LENGTH = 128
ID_TOO_LONG = f"Operation id longer than {MAX_ID_LENGTH} characters"

ACK = '{"type":"connection_ack"}'
PONG = '{"type":"pong"}'
KEEP_ALIVE = '{"type":"ka"}'

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    legacy: bool
    start: str  # the client's "run this operation"
    stop: str  # the client's "stop it"
    data: str  # the server's result message


DIALECTS = {
    TRANSPORT: Dialect(TRANSPORT, legacy=False, start="subscribe", stop="complete", data="next"),
    LEGACY: Dialect(LEGACY, legacy=True, start="start", stop="stop", data="data"),
}


def pick(offered: list[str]) -> Dialect | None:
    """The first subprotocol the client offers that we speak."""
    for name in offered:
        if (dialect := DIALECTS.get(name)) is not None:
            return dialect
    return None


def parse(text: str) -> Message | None:
    """A JSON object with a string `type`, or None."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


def _optional(payload: Message, key: str, kind: type | tuple[type, ...]) -> bool:
    return payload.get(key) is None or isinstance(payload[key], kind)


def problem(message: Message, dialect: Dialect) -> str | None:
    """Why `message` is malformed (transport: close 4400; legacy: ignored, except an
    over-long id, which closes both), or None."""
    kind = message["type"]
    if kind == "connection_init":
        if not _optional(message, "payload", dict):
            return "Invalid connection init payload"
        return None
    if kind in (dialect.start, dialect.stop):
        if not isinstance(op_id := message.get("id"), str):
            return "Failed to parse message"
        if len(op_id) > MAX_ID_LENGTH:
            return ID_TOO_LONG
    if kind == dialect.start:
        payload = message.get("payload")
        if not (
            isinstance(payload, dict)
            # A persisted document's hash may stand in for the query (taxi/api/persisted.py).
            and _optional(payload, "query", str)
            and (payload.get("query") is not None or payload.get("extensions") is not None)
            and _optional(payload, "variables", dict)
            and _optional(payload, "operationName", str)
            and _optional(payload, "extensions", dict)
        ):
            return "Failed to parse message"
    return None


def frame_prefix(op_id: str, dialect: Dialect) -> bytes:
    """An operation's result frame up to its payload; the payload and `}` follow."""
    quoted = orjson.dumps(op_id)
    if dialect.legacy:
        return b'{"type":"data","id":' + quoted + b',"payload":'
    return b'{"id":' + quoted + b',"type":"next","payload":'


def error(op_id: str, errors: list[Message], dialect: Dialect) -> str:
    """An operation that failed before it ran. graphql-transport-ws sends the list;
    the legacy protocol one error."""
    payload: Any = errors[0] if dialect.legacy else errors
    return orjson.dumps({"id": op_id, "type": "error", "payload": payload}).decode()


def complete(op_id: str) -> str:
    return orjson.dumps({"id": op_id, "type": "complete"}).decode()


def connection_error(payload: Message) -> str:
    return orjson.dumps({"type": "connection_error", "payload": payload}).decode()
