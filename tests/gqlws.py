"""The client side of GraphQL over WebSocket, as messages: what a client sends and how to read
what comes back, for both subprotocols (`graphql-transport-ws` and the legacy `graphql-ws`).

One vocabulary for every client of the project: the tests' exact client (tests/ws.py, on
`websockets`) and the benchmarks' lean sockets (bench/gqlws.py, on bench/net.py's bare
asyncio protocol, which 10,000 sockets need). No socket and no taxi import here, so both can
use it without pulling in the other."""

from __future__ import annotations

from typing import Any

import orjson

TRANSPORT = "graphql-transport-ws"
LEGACY = "graphql-ws"
PROTOCOLS = (TRANSPORT, LEGACY)

Message = dict[str, Any]
# A subscribe frame pre-encoded around its id and variables (head, middle): the load
# generator sends thousands a second and only the id and the variables change.
Template = tuple[bytes, bytes]

PING: Message = {"type": "ping"}
PONG: Message = {"type": "pong"}
ACK: Message = {"type": "connection_ack"}


def connection_init(payload: Message | None = None) -> Message:
    message: Message = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    return message


def authenticated(token: str) -> Message:
    """connection_init with the token where the server reads it (PROTOCOL.md)."""
    return connection_init({"authToken": token})


def subscribe(
    op_id: str, query: str, variables: Message | None = None, *, legacy: bool = False
) -> Message:
    """Start an operation (any kind: graphql-transport-ws runs queries and mutations too)."""
    return {
        "id": op_id,
        "type": "start" if legacy else "subscribe",
        "payload": {"query": query, "variables": variables or {}},
    }


def stop(op_id: str, *, legacy: bool = False) -> Message:
    return {"id": op_id, "type": "stop" if legacy else "complete"}


def result_type(*, legacy: bool = False) -> str:
    """The type of a message carrying a result."""
    return "data" if legacy else "next"


def template(query: str) -> Template:
    """`subscribe(op_id, query, variables)` as bytes around the id and the variables."""
    return b'{"id":"', b'","type":"subscribe","payload":{"query":' + orjson.dumps(
        query
    ) + b',"variables":'


def framed(tpl: Template, op_id: str, variables: bytes) -> bytes:
    """The frame of `tpl` for `op_id` with `variables` (JSON)."""
    return b"".join((tpl[0], op_id.encode(), tpl[1], variables, b"}}"))


def errors(message: Message) -> list[Message]:
    """The GraphQL errors a message carries: an `error` message's (a list in
    graphql-transport-ws, one object in legacy graphql-ws) or a result's `errors`."""
    payload: Any = message.get("payload")
    if message.get("type") == "error":
        return list(payload) if isinstance(payload, list) else [payload]
    found: list[Message] = payload.get("errors") or [] if isinstance(payload, dict) else []
    return found


def failure(message: Message) -> str | None:
    """The first error's `extensions.code` (or message), None when the answer succeeded."""
    found = errors(message)
    if not found:
        return None
    first = found[0]
    return str((first.get("extensions") or {}).get("code", first.get("message")))
