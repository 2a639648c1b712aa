"""Hostile input, fuzzed with hypothesis: random and mutated GraphQL documents, variables,
JSON, raw bytes and multipart bodies over HTTP (the ASGI app), and random or mutated
frames for both WebSocket subprotocols over a real socket.

What must hold for every input: no HTTP 500 and no INTERNAL_SERVER_ERROR (a client fault
is never a bug), every error carries `extensions.code`, no stack trace or source path in
any response, no socket left hanging, and the process keeps serving afterwards.

Limits relied on (taxi.core.config.Settings; PROTOCOL.md "Limits"):
- `max_body_bytes` (8 MiB): a larger HTTP body is refused with 413 and a JSON error with
  `extensions.code`, whether it declares a Content-Length or is sent chunked;
- `max_ws_message_bytes` (64 KiB): uvicorn's `ws_max_size` (set by `taxi serve` and the
  `server` fixture) closes the socket with 1009 on a larger frame;
- `max_upload_bytes` (5 MiB) per photo, see test_security.py;
- per document: depth 10, 15 aliases, 2,000 tokens.

The runs are bounded and reproducible (derandomize=True, no example database): the
numbers of examples below, per backend, keep this file well under a minute."""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from taxi.core.config import Settings
from tests.helpers import (
    ACCEPT_TRIP,
    CANCEL_TRIP,
    LOG_IN,
    RATE_TRIP,
    REPORT_LOCATION,
    REQUEST_TRIP,
    SIGN_UP,
    TRIP,
    UPDATE_STATUS,
    account,
)
from tests.live import LiveServer
from tests.ws import LEGACY, TRANSPORT, open_ws

PREFLIGHT = {"Apollo-Require-Preflight": "1"}
# Examples per test and backend.
HTTP_EXAMPLES = 300
WS_EXAMPLES = 150


def fuzz(examples: int) -> fuzz_settings:
    return fuzz_settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        # The app (and its server) is shared by all examples of a test on purpose: it
        # must survive every one of them.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- strategies ----------------------------------------------------------------------------

TRIPS = """
query T($s: [TripStatus!], $f: Int, $a: String) {
  trips(status: $s, first: $f, after: $a) {
    totalCount edges { cursor node { id status rider { id } } } pageInfo { hasNextPage endCursor }
  }
}"""
DOCUMENTS = [
    SIGN_UP,
    LOG_IN,
    REQUEST_TRIP,
    ACCEPT_TRIP,
    UPDATE_STATUS,
    CANCEL_TRIP,
    RATE_TRIP,
    REPORT_LOCATION,
    TRIP,
    TRIPS,
    "{ me { id username firstName lastName group photoUrl rating } }",
    "mutation R($r: String!) { refreshToken(refresh: $r) { access refresh } }",
    "mutation L($r: String!) { logOut(refresh: $r) }",
    "query { __schema { types { name fields { name args { name } } } } }",
    "fragment U on User { id username } query Q { me { ...U } }",
    "query A { me { id } } query B { trips { totalCount } }",
    "subscription { tripsUpdated { id } }",
    "{ a: me { id } b: me { id } c: __typename }",
]
# Characters that change GraphQL's structure, plus anything at all.
SYNTAX = st.sampled_from([*"{}()[]:$!@.,\"'#\\|&=\n\t ", "...", '"""', "\\u", "\x00"])
CHARS = st.one_of(SYNTAX, st.characters(), st.text(string.ascii_letters, min_size=1, max_size=6))


@st.composite
def mutated(draw: st.DrawFn, sources: list[str]) -> str:
    """A valid text with a few characters inserted, deleted, replaced or duplicated."""
    text = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            text = text[:i] + draw(CHARS) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(CHARS) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["RIDER", "DRIVER", "REQUESTED", "COMPLETED", "", "x" * 300]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
VARIABLE_NAMES = ["input", "id", "tripId", "status", "rating", "location", "username",
                  "password", "r", "s", "f", "a", "refresh"]  # fmt: skip
VARIABLES = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(VARIABLE_NAMES) | st.text(max_size=8), JSON, max_size=5),
    JSON,
)
DOCUMENT = st.one_of(mutated(DOCUMENTS), st.text(max_size=200), st.sampled_from(DOCUMENTS))
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/graphql",
    "application/graphql-response+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=xyz",
    "multipart/mixed; boundary=xyz",
    "application/octet-stream",
    "image/png",
    "",
    "\x00;;",
]


# -- checks --------------------------------------------------------------------------------


def check_text(text: str) -> None:
    assert "Traceback" not in text, text[:500]
    assert 'File "' not in text, text[:500]


def check_errors(errors: object) -> None:
    assert isinstance(errors, list) and errors, errors
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str) and code, error
        assert code != "INTERNAL_SERVER_ERROR", error


def check_response(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    check_text(response.text)
    is_error = response.status_code >= 400
    try:
        body = response.json()
    except ValueError:
        assert not is_error, (response.status_code, response.text[:500])
        return
    if is_error or (isinstance(body, dict) and "errors" in body):
        assert isinstance(body, dict), body
        check_errors(body.get("errors"))


async def check_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200, response.text


# Starlette's multipart parser drops (unclosed, for the GC to close) the spooled file of
# a part that a truncated body never finished; nothing of ours holds it.
STARLETTE_SPOOL = (
    r"ignore:Exception ignored in. <function SpooledTemporaryFile.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    return (await account(client)).access


# -- HTTP ----------------------------------------------------------------------------------


@fuzz(HTTP_EXAMPLES * 2)
@given(
    document=DOCUMENT,
    variables=VARIABLES,
    operation=st.none() | st.sampled_from(["SignUp", "Q", "A", "B", ""]) | st.text(max_size=8),
    signed_in=st.booleans(),
)
async def test_documents_and_variables(
    client: httpx.AsyncClient,
    token: str,
    document: str,
    variables: Any,
    operation: str | None,
    signed_in: bool,
) -> None:
    body: dict[str, Any] = {"query": document, "variables": variables}
    if operation is not None:
        body["operationName"] = operation
    headers = {"Authorization": f"Bearer {token}"} if signed_in else {}
    check_response(await client.post("/graphql", json=body, headers=headers))
    await check_alive(client)


@fuzz(HTTP_EXAMPLES)
@given(
    body=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"query": JSON | DOCUMENT},
            optional={"variables": JSON, "operationName": JSON, "extensions": JSON},
        ),
    )
)
async def test_json_bodies(client: httpx.AsyncClient, body: Any) -> None:
    check_response(await client.post("/graphql", json=body))
    await check_alive(client)


@pytest.mark.filterwarnings(STARLETTE_SPOOL)
@fuzz(HTTP_EXAMPLES)
@given(
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
    body=st.one_of(
        st.binary(max_size=300),
        mutated([json.dumps({"query": d}) for d in DOCUMENTS]).map(str.encode),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
)
async def test_raw_bodies(client: httpx.AsyncClient, content_type: str, body: bytes) -> None:
    # The preflight header gets non-JSON bodies past the CSRF check, to the parsers.
    headers = {b"Content-Type": content_type.encode()} if content_type.isprintable() else {}
    headers[b"Apollo-Require-Preflight"] = b"1"
    check_response(await client.post("/graphql", content=body, headers=headers))
    await check_alive(client)


VALID_OPERATIONS = json.dumps(
    {
        "query": SIGN_UP,
        "variables": {
            "input": {
                "username": "fuzzed",
                "firstName": "F",
                "lastName": "Z",
                "password1": "correct-horse-9",
                "password2": "correct-horse-9",
                "photo": None,
            }
        },
    }
)
VALID_MAP = json.dumps({"0": ["variables.input.photo"]})


@st.composite
def multipart(draw: st.DrawFn) -> tuple[str, bytes]:
    """A multipart body per the GraphQL multipart request spec, then damaged."""
    boundary = draw(st.sampled_from(["fuzzboundary", "a", "----x"]))
    operations = draw(
        st.sampled_from([VALID_OPERATIONS]) | mutated([VALID_OPERATIONS]) | JSON.map(json.dumps)
    )
    mapping = draw(st.sampled_from([VALID_MAP]) | mutated([VALID_MAP]) | JSON.map(json.dumps))
    parts: list[tuple[str, str | None, bytes]] = [
        ("operations", None, operations.encode("utf-8", "surrogatepass")),
        ("map", None, mapping.encode("utf-8", "surrogatepass")),
    ]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["0", "1", "photo", "operations"]) | st.text(max_size=5))
        file_name = draw(st.sampled_from(["a.png", "../../x.png", "", "a\x00.png"]))
        content = draw(
            st.sampled_from([b"\x89PNG\r\n\x1a\n" + b"\x00" * 20]) | st.binary(max_size=64)
        )
        parts.append((name, file_name, content))
    parts = draw(st.permutations(parts))
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: image/png'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(
            "utf-8", "surrogatepass"
        )
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):  # damage the framing itself
        i = draw(st.integers(0, len(out)))
        j = draw(st.integers(i, min(len(out), i + 20)))
        out = out[:i] + draw(st.binary(max_size=8)) + out[j:]
    return f"multipart/form-data; boundary={boundary}", out


@pytest.mark.filterwarnings(STARLETTE_SPOOL)
@fuzz(HTTP_EXAMPLES)
@given(request=multipart())
async def test_multipart_bodies(client: httpx.AsyncClient, request: tuple[str, bytes]) -> None:
    content_type, body = request
    headers = {"Content-Type": content_type, **PREFLIGHT}
    response = await client.post("/graphql", content=body, headers=headers)
    check_response(response)
    await check_alive(client)


@fuzz(HTTP_EXAMPLES)
@given(
    params=st.dictionaries(
        st.sampled_from(["query", "variables", "operationName", "extensions"]),
        DOCUMENT | JSON.map(json.dumps),
        max_size=3,
    )
)
async def test_get_requests(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    safe = {k: v.encode("utf-8", "replace").decode() for k, v in params.items()}
    response = await client.get("/graphql", params=safe, headers={"Accept": "application/json"})
    check_response(response)
    await check_alive(client)


async def test_get_never_runs_a_mutation(client: httpx.AsyncClient) -> None:
    mutation = 'mutation { logIn(username: "x", password: "y") { access } }'
    response = await client.get("/graphql", params={"query": mutation})
    assert 400 <= response.status_code < 500
    check_response(response)


# -- oversized bodies ------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid JSON request of exactly `size` bytes (JSON allows trailing whitespace)."""
    body = json.dumps({"query": "{ __typename }"}).encode()
    return body + b" " * (size - len(body))


async def chunks(body: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def check_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:200])
    check_text(response.text)
    code = response.json()["errors"][0]["extensions"]["code"]
    assert isinstance(code, str) and code


async def test_body_over_the_limit_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    limit = settings.max_body_bytes
    json_headers = {"Content-Type": "application/json"}
    at_limit = await client.post("/graphql", content=padded(limit), headers=json_headers)
    assert at_limit.status_code == 200, at_limit.text[:200]
    assert at_limit.json() == {"data": {"__typename": "Query"}}

    check_too_large(await client.post("/graphql", content=padded(limit + 1), headers=json_headers))
    # No Content-Length (chunked): counted as it arrives, refused all the same.
    check_too_large(
        await client.post("/graphql", content=chunks(padded(limit + 1)), headers=json_headers)
    )
    # A Content-Length that lies low does not get more than the limit through either.
    response = await client.post(
        "/graphql",
        content=chunks(padded(2 * limit)),
        headers={**json_headers, "Content-Length": "100"},
    )
    assert response.status_code in (400, 413), response.status_code
    check_response(response)
    # A multipart upload is a body like any other.
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * limit
    response = await client.post(
        "/graphql",
        data={"operations": VALID_OPERATIONS, "map": VALID_MAP},
        files={"0": ("big.png", big, "image/png")},
        headers=PREFLIGHT,
    )
    check_too_large(response)
    await check_alive(client)


# Inputs that gave 500s (or SQL and hashes in the error) when the running service was
# attacked (issue 9); raw JSON text, so lone surrogates and deep nesting go as sent.
_SIGN_UP_VARS = (
    '{"input": {"username": "u%s", "firstName": %s, "lastName": "L", '
    '"password1": "correct-horse-9", "password2": "correct-horse-9"}}'
)
ATTACKS = {
    "nul-in-name": (SIGN_UP, _SIGN_UP_VARS % ("nul1", '"Ada\\u0000"')),
    "surrogate-in-name": (SIGN_UP, _SIGN_UP_VARS % ("sur1", '"Ada\\ud800"')),
    "nesting-5000": (SIGN_UP, _SIGN_UP_VARS % ("deep1", "[" * 5000 + "]" * 5000)),
    "unknown-user-5000-char-password": (
        LOG_IN,
        json.dumps({"username": "nobody_at_all", "password": "p" * 5000}),
    ),
    "list-of-600000": (TRIPS, json.dumps({"s": ["REQUESTED"] * 600_000})),
    "nul-in-address": (
        REQUEST_TRIP,
        '{"input": {"pickUpAddress": "A\\u0000", "dropOffAddress": "B"}}',
    ),
}


@pytest.mark.parametrize("case", sorted(ATTACKS))
async def test_inputs_that_gave_500s(client: httpx.AsyncClient, token: str, case: str) -> None:
    document, variables = ATTACKS[case]
    raw = f'{{"query": {json.dumps(document)}, "variables": {variables}}}'
    response = await client.post(
        "/graphql",
        content=raw.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    check_response(response)
    assert response.status_code == 400 or "errors" in response.json(), response.text[:300]
    assert "argon2" not in response.text and "INSERT" not in response.text
    await check_alive(client)


# -- WebSocket -------------------------------------------------------------------------------

# How the server may end a socket after a hostile frame: any application code (4xxx),
# normal closure, or the RFC 6455 codes for bad data / policy / size / server error.
ALLOWED_CLOSE = {1000, 1002, 1003, 1007, 1008, 1009, 1011}
WAIT = 5.0
PROBE = "zz-probe"
SERVER_TYPES = {
    TRANSPORT: {"connection_ack", "next", "error", "complete", "ping", "pong"},
    LEGACY: {"connection_ack", "connection_error", "data", "error", "complete", "ka"},
}
CLIENT_TYPES = {
    TRANSPORT: ["connection_init", "subscribe", "complete", "ping", "pong"],
    LEGACY: ["connection_init", "start", "stop", "connection_terminate"],
}
WS_DOCUMENTS = [
    *DOCUMENTS,
    "subscription S($id: ID!) { tripUpdated(id: $id) { id status } }",
    "subscription L($tripId: ID!) { driverLocation(tripId: $tripId) { latitude } }",
    "subscription { tripRequested { id } }",
]


@st.composite
def frames(draw: st.DrawFn, protocol: str) -> list[str | bytes]:
    kinds = CLIENT_TYPES[protocol]
    payload = st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"query": mutated(WS_DOCUMENTS) | st.sampled_from(WS_DOCUMENTS)},
            optional={"variables": JSON, "operationName": JSON, "extensions": JSON},
        ),
    )
    message = st.fixed_dictionaries(
        {"type": st.sampled_from(kinds) | st.text(max_size=12)},
        optional={"id": st.text(max_size=6) | JSON, "payload": payload},
    )
    valid = json.dumps(
        {
            "id": "1",
            "type": kinds[1],
            "payload": {"query": "subscription { tripsUpdated { id } }"},
        }
    )
    one = st.one_of(
        message.map(json.dumps),
        mutated([valid, json.dumps({"type": kinds[0], "payload": {}})]),
        JSON.map(json.dumps),
        st.text(max_size=100),
        st.binary(max_size=100),
    )
    result: list[str | bytes] = draw(st.lists(one, min_size=1, max_size=3))
    return result


async def recv_or_close(conn: ClientConnection, protocol: str) -> dict[str, Any] | int:
    """The next message, checked against the protocol, or the code the socket closed with."""
    try:
        async with asyncio.timeout(WAIT):
            frame = await conn.recv()
            while frame == '{"type":"ka"}':  # legacy keep-alive: not an answer
                frame = await conn.recv()
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame from the server: {exc!r}"
        code = exc.rcvd.code
        assert 4000 <= code < 5000 or code in ALLOWED_CLOSE, exc.rcvd
        return code
    assert isinstance(frame, str), frame
    check_text(frame)
    message = json.loads(frame)
    assert isinstance(message, dict) and message.get("type") in SERVER_TYPES[protocol], message
    if message["type"] == "error" or (message.get("payload") or {}) == {"errors": []}:
        payload = message.get("payload")
        check_errors(payload if isinstance(payload, list) else [payload])
    elif isinstance(message.get("payload"), dict) and "errors" in message["payload"]:
        check_errors(message["payload"]["errors"])
    return message


async def probe(conn: ClientConnection, protocol: str) -> None:
    """After the fuzzed frames: the socket answers a known request or has closed."""
    if protocol == TRANSPORT:
        request: dict[str, Any] = {"type": "ping"}
    else:
        request = {"type": "start", "id": PROBE, "payload": {"query": "{ __typename }"}}
    with suppress(ConnectionClosed):
        await conn.send(json.dumps(request))
    for _ in range(50):
        got = await recv_or_close(conn, protocol)
        if isinstance(got, int):
            return
        if got["type"] == "pong" or (got["type"] == "data" and got.get("id") == PROBE):
            return
    raise AssertionError("no answer to the probe")


@asynccontextmanager
async def fuzzing(live: LiveServer, protocol: str, token: str) -> AsyncIterator[ClientConnection]:
    """A socket past the handshake, for raw frames (answers checked by recv_or_close)."""
    async with open_ws(live.ws_url, protocol) as ws:
        await ws.init({"authToken": token})
        assert await recv_or_close(ws.conn, protocol) == {"type": "connection_ack"}
        yield ws.conn


async def fuzz_socket(live: LiveServer, protocol: str, token: str, sent: list[str | bytes]) -> None:
    async with fuzzing(live, protocol, token) as conn:
        for frame in sent:
            try:
                await conn.send(frame)
            except ConnectionClosed:
                break
        await probe(conn, protocol)


async def fresh_connection_works(live: LiveServer, protocol: str, token: str) -> None:
    async with fuzzing(live, protocol, token) as conn:
        await probe(conn, protocol)
        assert conn.close_code is None, "the probe must be answered on a healthy socket"


@pytest.fixture
async def ws_token(server: LiveServer) -> str:
    async with server.http() as c:
        return (await account(c)).access


@fuzz(WS_EXAMPLES)
@given(sent=frames(TRANSPORT))
async def test_transport_ws_frames(server: LiveServer, ws_token: str, sent: list[Any]) -> None:
    await fuzz_socket(server, TRANSPORT, ws_token, sent)
    await fresh_connection_works(server, TRANSPORT, ws_token)


@fuzz(WS_EXAMPLES)
@given(sent=frames(LEGACY))
async def test_legacy_ws_frames(server: LiveServer, ws_token: str, sent: list[Any]) -> None:
    await fuzz_socket(server, LEGACY, ws_token, sent)
    await fresh_connection_works(server, LEGACY, ws_token)


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_ws_frame_over_the_limit_is_closed_with_1009(
    server: LiveServer, settings: Settings, ws_token: str, protocol: str
) -> None:
    limit = settings.max_ws_message_bytes
    async with fuzzing(server, protocol, ws_token) as conn:
        # Exactly at the limit is a frame like any other.
        if protocol == TRANSPORT:
            ping = json.dumps({"type": "ping"})
            await conn.send(ping + " " * (limit - len(ping)))
            assert await recv_or_close(conn, protocol) == {"type": "pong"}
        await conn.send(json.dumps({"type": "ping", "payload": {"pad": "x" * limit}}))
        assert await recv_or_close(conn, protocol) == 1009
    await fresh_connection_works(server, protocol, ws_token)
