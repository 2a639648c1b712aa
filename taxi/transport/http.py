"""The GraphQL endpoint over HTTP: a JSON POST decoded once and handed to the executor
(taxi/api/executor.py); Strawberry's view for the rest (GET query strings, multipart
uploads, the GraphiQL page), whose execution hook hands the operation to the same
executor. The WebSocket side of the same path is taxi/transport/live."""

from __future__ import annotations

from typing import Any

import orjson
from cross_web import HTTPException
from graphql import ExecutionResult, OperationType
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from taxi.api.answer import Answer, BadRequest
from taxi.api.context import Context, Services
from taxi.api.executor import Executor
from taxi.api.strawberry_adapter import View, ViewOperation
from taxi.core.config import Settings
from taxi.domain import auth
from taxi.transport import pages

# What each method may run (a mutation never over GET; subscriptions over WebSocket).
ALLOWED = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}

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


def _too_large(limit: int) -> JSONResponse:
    # Built when needed: rendering it cost as much as a small request's parsing.
    return error_response(413, f"Request body larger than {limit} bytes.", "PAYLOAD_TOO_LARGE")


class TaxiGraphQL(View):
    def __init__(self, schema: Any, *, settings: Settings, executor: Executor, **kwargs: Any):
        # No streaming transports (SSE, multipart subscriptions): those would run
        # Strawberry's own `schema.stream`, outside the executor and its limits.
        super().__init__(schema, subscription_protocols=(), **kwargs)
        self.settings = settings
        self.executor = executor

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses what the standard library let through to a 500: a lone
        # surrogate (no UTF-8 for it, so no database can store it) and deep nesting
        # (RecursionError); it raises a JSONDecodeError, answered with HTTP 400.
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        # The view's responses (GET, multipart); its base class wants str.
        return orjson.dumps(data).decode()

    async def render_graphql_ide(self, request: Request) -> Response:
        # Our own page: Strawberry's loads GraphiQL and React from a CDN (taxi/transport/pages.py).
        return HTMLResponse(pages.graphiql_html())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP only: the WebSocket side of /graphql is taxi/transport/live (taxi/main.py routes).
        assert scope["type"] == "http"
        await self._http(scope, receive, send)

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
        response: Response
        if _needs_preflight(request):
            response = error_response(400, CSRF_REFUSED, "BAD_REQUEST")
        elif length is not None and (not length.isdigit() or int(length) > limit):
            response = _too_large(limit)
        else:
            try:
                if _plain_json(request):
                    response = await self._json(request)
                else:
                    response = await self.run(request)
            except BadRequest as exc:
                response = error_response(400, exc.message, exc.code)
            except _BodyTooLarge:
                response = _too_large(limit)
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

    async def _json(self, request: Request) -> Response:
        """A JSON POST, decoded once, checked as Strawberry's view checks it, run."""
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, "Unable to parse request body as JSON") from exc
        if isinstance(data, list):
            raise HTTPException(400, "Batching is not enabled")
        if not isinstance(data, dict):
            raise HTTPException(400, "Malformed GraphQL request.")
        query, variables = data.get("query"), data.get("variables")
        name, extensions = data.get("operationName"), data.get("extensions")
        for key, value, kinds in (
            ("query", query, str | None),
            ("variables", variables, dict | None),
            ("extensions", extensions, dict | None),
        ):
            if not isinstance(value, kinds):
                kind = "a string" if key == "query" else "an object"
                raise HTTPException(
                    400, f"The GraphQL operation's `{key}` must be {kind} or null, if provided."
                )
        context = await self.get_context(request, response=None)
        answer = await self._run(request, context, query, variables, name, extensions)
        body: dict[str, Any] = {"data": answer.data}
        if answer.errors:
            body["errors"] = [e.formatted for e in answer.errors]
        response = Response(orjson.dumps(body), answer.status, media_type="application/json")
        if answer.no_store:
            # Never cached by a CDN: the client registers the document next.
            response.headers["Cache-Control"] = "no-store"
        return response

    async def _run(
        self,
        request: Request,
        context: Context,
        query: object,
        variables: dict[str, Any] | None,
        name: object,
        extensions: dict[str, Any] | None,
    ) -> Answer:
        if not isinstance(name, str | None):
            raise BadRequest(f'Unknown operation named "{name}".')
        return await self.executor.run(
            context,
            query=query,
            variables=variables,
            operation_name=name,
            extensions=extensions,
            allowed=ALLOWED.get(request.method, frozenset()),
            via=request.method,
        )

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

    async def operation(self, op: ViewOperation) -> ExecutionResult:
        """What Strawberry's view parsed (GET, multipart), run by the executor."""
        data = op.data
        answer = await self._run(
            op.request, op.context, data.query, data.variables, data.operation_name, data.extensions
        )
        if answer.no_store:
            op.sub_response.headers["Cache-Control"] = "no-store"
        if answer.status != 200:
            op.sub_response.status_code = answer.status
        return ExecutionResult(data=answer.data, errors=answer.errors)

    async def get_context(self, request: Request, response: Any) -> Context:  # type: ignore[override]
        services: Services = request.app.state.services
        header = request.headers.get("authorization")
        token = auth.strip_bearer(header) if header else None
        return Context(services=services, request=request, response=response, token=token)


def _plain_json(request: Request) -> bool:
    """A JSON POST that wants one JSON answer (not a multipart or event stream)."""
    if request.method != "POST":
        return False
    headers = request.headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    accept = headers.get("accept", "")
    streamed = "multipart" in accept or "event-stream" in accept
    return media == "application/json" and not streamed


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
