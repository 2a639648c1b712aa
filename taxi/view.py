"""The GraphQL endpoint: Strawberry's ASGI view with our context, auth and limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET

from taxi import auth, metrics, pages, persisted
from taxi.config import Settings
from taxi.context import Context, Services
from taxi.errors import BadUserInput, ServiceUnavailable, Unauthenticated
from taxi.schema import MAX_TOKENS, fanout, fastpath, inputs
from taxi.schema.errors import PRE_EXECUTION_CODES, is_outage, with_codes
from taxi.sockets import TOO_MANY, TooManySockets, close_forbidden

log = logging.getLogger("taxi.ws")

ASGI_SEND = "taxi.send"
GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013
FORBIDDEN = 4403
INIT_TIMEOUT = 4408
INIT_TIMEOUT_REASON = "Connection initialisation timeout"
# Operations in flight on one socket (strawberry's max_subscriptions_per_connection:
# the next is answered with an error, the socket stays open).
MAX_OPERATIONS_PER_SOCKET = 100
PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")
CSRF_REFUSED = (
    "This request was refused as a possible CSRF: send it as application/json, "
    "or with a non-empty Apollo-Require-Preflight header."
)


class _BodyTooLarge(Exception):
    """Raised from `receive` past max_body_bytes (not a ValueError: strawberry turns
    those into "Unable to parse the multipart body")."""


def error_response(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


def _well_formed(message: object) -> bool:
    """Strawberry indexes into messages as they come: valid JSON of the wrong shape
    (`[]`, a string payload) raised TypeError and closed the socket with 1011."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    kind = message["type"]
    if kind in ("subscribe", "start", "complete", "stop") and not isinstance(
        message.get("id"), str
    ):
        return False
    if kind in ("subscribe", "start"):
        payload = message.get("payload")
        return (
            isinstance(payload, dict)
            # A persisted document's hash may stand in for the query (taxi.persisted).
            and isinstance(payload.get("query", None), str | None)
            and isinstance(payload.get("extensions", None), dict | None)
            and (payload.get("query") is not None or payload.get("extensions") is not None)
            and isinstance(payload.get("variables", None), dict | None)
            and isinstance(payload.get("operationName", None), str | None)
        )
    return True


def _bad_variables(message: dict[str, Any]) -> dict[str, Any] | None:
    """A subscribe/start whose variables break the input limits: its error, else None."""
    if message["type"] not in ("subscribe", "start"):
        return None
    reason = inputs.problem(message["payload"].get("variables"))
    if reason is None:
        return None
    return {"message": reason, "extensions": {"code": BadUserInput.code}}


class _OutageAtInit:
    """Both protocols: an outage while connection_init authenticates closes with 1013;
    a user over MAX_SOCKETS_PER_USER is closed with 4429."""

    legacy = False

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)  # type: ignore[misc]
        except TooManySockets:
            await _too_many(self, legacy=self.legacy)
        except Exception as exc:
            if not is_outage(exc):
                raise
            await _unavailable(self, exc, legacy=self.legacy)


class _Sinks:
    """Both protocols: name each operation's socket and id for the live streams'
    shared frames (taxi/schema/fanout.py), and retire them the moment the client stops
    the operation, not when its cancelled task next runs."""

    context: Context
    legacy = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sinks: dict[str, fanout.Sink] = {}

    async def _run_with_sink(self, operation_id: str, run: Awaitable[None]) -> None:
        # In the operation's own task: the context variable is that operation's alone.
        send = self.context.request.scope[ASGI_SEND]
        sink = fanout.Sink(send, fanout.frame_prefix(operation_id, legacy=self.legacy))
        fanout.current_sink.set(sink)
        self._sinks[operation_id] = sink
        try:
            await run
        finally:
            sink.live = False
            if self._sinks.get(operation_id) is sink:  # the id may be someone else's now
                del self._sinks[operation_id]

    async def cleanup_operation(self, operation_id: str) -> None:
        if (sink := self._sinks.pop(operation_id, None)) is not None:
            sink.live = False
        await super().cleanup_operation(operation_id)  # type: ignore[misc]


async def _resolve_document(handler: Any, message: Any, *, legacy: bool) -> bool:
    """A `subscribe`/`start` message's document per the persisted-documents rules
    (taxi.persisted), put in its payload; False when refused (the operation's `error`
    message is sent, the socket stays open)."""
    if message["type"] not in ("subscribe", "start"):
        return True
    payload = message["payload"]
    documents = handler.context.services.documents
    try:
        query = await documents.resolve(
            query=payload.get("query"), extensions=payload.get("extensions")
        )
        if not isinstance(query, str):
            raise persisted.Refused("BAD_REQUEST", "No GraphQL query found in the request.")
        payload["query"] = query
    except persisted.Refused as exc:
        error = exc.as_error()
        await handler.send_message(
            {"type": "error", "id": message["id"], "payload": error if legacy else [error]}
        )
        return False
    return True


class _TransportWSHandler(_Sinks, _OutageAtInit, BaseGraphQLTransportWSHandler[Context, None]):
    async def run_operation(self, operation: Any) -> None:
        # Position reports skip the GraphQL execution (taxi/schema/fastpath.py).
        query, variables, name = operation.query, operation.variables, operation.operation_name
        if (data := await fastpath.answer(self.context, query, variables, name)) is not None:
            await operation.send_operation_message(
                {"id": operation.id, "type": "next", "payload": {"data": data}}
            )
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
            return
        await self._run_with_sink(operation.id, super().run_operation(operation))

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message):
            await self.handle_invalid_message("Invalid message")  # 4400
            return
        if (bad := _bad_variables(message)) is not None:
            error = {"id": message["id"], "type": "error", "payload": [bad]}
            await self.send_message(error)  # type: ignore[arg-type]
            return
        if self.connection_acknowledged and not await _resolve_document(
            self, message, legacy=False
        ):
            return
        await super().handle_message(message)


class _StreamAnyOperation:
    """Strawberry's legacy handler runs every `start` through schema.subscribe(), which
    refuses queries and mutations (an INTERNAL_SERVER_ERROR); PROTOCOL.md promises them
    on both subprotocols. stream() runs any operation type."""

    def __init__(self, schema: Any) -> None:
        self._schema = schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)

    async def subscribe(self, **kwargs: Any) -> Any:
        return await self._schema.stream(**kwargs)


class _LegacyWSHandler(_Sinks, _OutageAtInit, BaseGraphQLWSHandler[Context, None]):
    legacy = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = _StreamAnyOperation(self.schema)  # type: ignore[assignment]
        self._init_seen = False

    async def handle(self) -> None:
        # subscriptions-transport-ws has no connection_init deadline of its own (and
        # strawberry's handler none): an idle socket held memory forever. Closed like
        # graphql-transport-ws's (4408) after WS_INIT_TIMEOUT_SECONDS.
        deadline = asyncio.create_task(self._init_deadline())
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def _init_deadline(self) -> None:
        await asyncio.sleep(self.view.settings.ws_init_timeout_seconds)  # type: ignore[attr-defined]
        if not self._init_seen:
            with suppress(RuntimeError, OSError):
                await self.websocket.close(code=INIT_TIMEOUT, reason=INIT_TIMEOUT_REASON)

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message):  # like unparsable JSON, the rest is ignored
            return
        if message["type"] == "connection_init":
            self._init_seen = True
        if (bad := _bad_variables(message)) is not None:
            error = {"id": message["id"], "type": "error", "payload": bad}
            await self.send_message(error)  # type: ignore[arg-type]
            return
        if await _resolve_document(self, message, legacy=True):
            await super().handle_message(message)

    async def handle_async_results(self, operation_id: str, *args: Any, **kwargs: Any) -> None:
        run = super().handle_async_results(operation_id, *args, **kwargs)
        await self._run_with_sink(operation_id, run)


async def _too_many(handler: Any, *, legacy: bool) -> None:
    if legacy:
        error = {"message": "Too many open sockets.", "extensions": {"code": "RATE_LIMITED"}}
        await handler.send_message({"type": "connection_error", "payload": error})
    await handler.websocket.close(code=TOO_MANY, reason="Too many sockets")


async def _unavailable(handler: Any, exc: Exception, *, legacy: bool) -> None:
    """The database went away while connection_init authenticated the token: close with
    1013 Try Again Later, which clients retry (it crashed the socket, 1006, with a
    traceback in the log; 4403 would have told the client its token was bad)."""
    log.warning("connection_init: backend unavailable: %r", exc)
    if legacy:
        error = {
            "message": ServiceUnavailable.default_message,
            "extensions": {"code": ServiceUnavailable.code},
        }
        await handler.send_message({"type": "connection_error", "payload": error})
    await handler.websocket.close(code=TRY_AGAIN_LATER, reason="Service unavailable")


class TaxiGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = _TransportWSHandler
    graphql_ws_handler_class = _LegacyWSHandler

    def __init__(self, schema: Any, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.settings = settings
        self.sockets: set[WebSocket] = set()

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses what the standard library let through to a 500: a lone
        # surrogate (no UTF-8 for it, so no database can store it) and deep nesting
        # (RecursionError); it raises a JSONDecodeError, answered with HTTP 400.
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        # str, not bytes: the WebSocket adapter sends bytes as binary frames, which
        # GraphQL-over-WebSocket clients (graphql-ws, Apollo, urql) cannot parse.
        return orjson.dumps(data).decode()

    async def render_graphql_ide(self, request: Request) -> Response:
        # Our own page: Strawberry's loads GraphiQL and React from a CDN (taxi/pages.py).
        return HTMLResponse(pages.graphiql_html())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            # Frames of live streams go straight to the server, past Starlette's
            # WebSocket wrapper (two calls per frame per subscriber; see fanout.Sink).
            scope[ASGI_SEND] = send
            await super().__call__(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.settings.max_body_bytes
        received = 0

        async def receive_within_limit() -> Message:
            # A body without Content-Length (chunked) is counted as it arrives.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        request = Request(scope, receive=receive_within_limit)
        length = request.headers.get("content-length")
        too_large = error_response(
            413, f"Request body larger than {limit} bytes.", "PAYLOAD_TOO_LARGE"
        )
        response: Response
        if _needs_preflight(request):
            response = error_response(400, CSRF_REFUSED, "BAD_REQUEST")
        elif length is not None and (not length.isdigit() or int(length) > limit):
            response = too_large
        else:
            try:
                response = await self.run(request)
            except _BodyTooLarge:
                response = too_large
            except HTTPException as exc:
                code = "BAD_REQUEST" if exc.status_code == 400 else "HTTP_ERROR"
                response = error_response(exc.status_code, exc.reason, code)
            except StarletteHTTPException as exc:
                # Starlette's multipart parser ("Missing boundary in multipart."): JSON too.
                code = "BAD_REQUEST" if exc.status_code == 400 else "HTTP_ERROR"
                response = error_response(exc.status_code, exc.detail, code)
            finally:
                # Multipart uploads are spooled to temporary files: close them now.
                await request.close()
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with a persisted document's hash and no query is an operation, not a
        # browser asking for GraphiQL.
        if request.query_params.get("extensions") is not None:
            return False
        return super().should_render_graphql_ide(request)

    async def parse_http_body(self, request: Any) -> Any:
        try:
            return await super().parse_http_body(request)
        except HTTPException:
            raise
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            # JSON of the wrong shape (`false`, a string `map`, ...): strawberry indexes
            # into it as it comes. A client's fault: 400, never a 500.
            raise HTTPException(400, "Malformed GraphQL request.") from exc

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        data = kwargs["request_data"]
        reason = inputs.problem(data.variables)
        if reason is not None:
            # Before graphql-core coerces them (seconds for a 600,000-item list).
            kwargs["sub_response"].status_code = 400
            error = GraphQLError(reason, extensions={"code": BadUserInput.code})
            return ExecutionResult(data=None, errors=[error])
        documents = kwargs["request"].app.state.services.documents
        try:
            data.query = await documents.resolve(query=data.query, extensions=data.extensions)
        except persisted.Refused as exc:
            # Never cached by a CDN: the client registers the document next.
            kwargs["sub_response"].headers["Cache-Control"] = "no-store"
            metrics.operation(name=data.operation_name, kind="unknown", code=exc.code, seconds=None)
            error = GraphQLError(exc.message, extensions={"code": exc.code})
            return ExecutionResult(data=None, errors=[error])
        if _is_subscription(data.query, data.operation_name):
            # Subscriptions are served over WebSocket; run over plain HTTP, the stream
            # the resolver returns surfaced as an INTERNAL_SERVER_ERROR.
            raise HTTPException(400, "Subscriptions are served over WebSocket only.")
        result = await super().execute_single(*args, **kwargs)
        if result.errors:
            # Parse failures skip the extensions; give them their code here too.
            result.errors = with_codes(result.errors, mask_internal=self.settings.production)
            if result.data is None and any(
                e.path is None and (e.extensions or {}).get("code") in PRE_EXECUTION_CODES
                for e in result.errors
            ):
                kwargs["sub_response"].status_code = 400
        return result

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        services: Services = request.app.state.services
        token = None
        if request.scope["type"] == "http":
            header = request.headers.get("authorization")
            token = auth.strip_bearer(header) if header else None
        return Context(services=services, request=request, response=response, token=token)

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        context.token = auth.token_from_connection_params(context.connection_params)
        # Legacy graphql-ws lets a client send connection_init again: authenticate that
        # token afresh (the cached user of the first one made the assert below fail).
        context.forget_user()
        try:
            await context.user()
            assert context.token is not None
            claims = auth.decode_token(context.token, settings=self.settings, token_type="access")
        except Unauthenticated as exc:
            raise ConnectionRejectionError(
                {"message": exc.message, "extensions": {"code": exc.code}}
            ) from exc
        ws = context.request
        assert isinstance(ws, WebSocket)
        user = await context.user()
        assert user.id is not None
        # Raises TooManySockets past MAX_SOCKETS_PER_USER (closed with 4429 above).
        context.services.sockets.add(
            ws, user_id=user.id, sid=str(claims["sid"]), revoke=context.revoke
        )
        delay = max(0.0, auth.expires_at(claims).timestamp() - time.time())
        if (previous := getattr(ws.state, "expiry", None)) is not None:
            previous.cancel()
        ws.state.expiry = asyncio.get_running_loop().call_later(
            delay, lambda: asyncio.ensure_future(self._expire(ws))
        )
        # UNSET: a bare connection_ack; graphql-ws 5.x clients reject `"payload": null`.
        return UNSET

    async def _expire(self, ws: WebSocket) -> None:
        """The token that opened the socket expired: clients reconnect with a fresh one."""
        await close_forbidden(ws, "Token has expired.")

    async def pick_websocket_subprotocol(self, request: WebSocket) -> str | None:
        protocol = await super().pick_websocket_subprotocol(request)
        request.state.protocol = protocol
        return protocol

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:  # type: ignore[override]
        if request.scope["type"] != "websocket":
            return await super().run(request)
        self.sockets.add(request)
        metrics.socket_opened()
        try:
            return await super().run(request)
        finally:
            metrics.socket_closed()
            self.sockets.discard(request)
            request.app.state.services.sockets.discard(request)
            if (timer := getattr(request.state, "expiry", None)) is not None:
                timer.cancel()

    async def close_sockets(self) -> None:
        """On shutdown: 1001 Going Away, so clients reconnect to another process."""
        for ws in list(self.sockets):
            with suppress(Exception):
                if ws.application_state == WebSocketState.CONNECTED:
                    await ws.close(code=GOING_AWAY, reason="Server shutting down")


def _is_subscription(query: object, operation_name: object) -> bool:
    if not isinstance(query, str) or "subscription" not in query:
        return False  # cheap: the keyword must be in the text
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return False  # strawberry reports the syntax error itself
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if isinstance(operation_name, str):
        operations = [d for d in operations if d.name and d.name.value == operation_name]
    # Without a name, any subscription in the document counts (strawberry picks the
    # first operation where graphql-core would refuse to choose).
    return any(d.operation is OperationType.SUBSCRIPTION for d in operations)


def _needs_preflight(request: Request) -> bool:
    """CSRF prevention as Apollo Server does it: a browser may send a cross-site POST
    without a preflight only as a "simple" request, which cannot be application/json
    and cannot carry custom headers. So a POST that is not JSON (multipart uploads,
    text/plain, forms) must carry one of these headers, which forces the preflight
    that CORS then refuses for foreign origins."""
    if request.method != "POST":
        return False  # GET never runs mutations
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    if json:
        return False  # never a "simple" request: browsers preflight it
    headers = request.headers
    return not any(headers.get(name, "").strip() for name in PREFLIGHT_HEADERS)
