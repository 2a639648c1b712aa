"""The GraphQL endpoint over HTTP: Strawberry's ASGI view with our context, auth and
limits. The WebSocket side of the same path is taxi/transport/live."""

from __future__ import annotations

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
from strawberry.asgi import GraphQL

from taxi.api import persisted
from taxi.api.context import Context, Services
from taxi.api.schema import inputs
from taxi.api.schema.errors import PRE_EXECUTION_CODES, with_codes
from taxi.api.schema.limits import MAX_TOKENS
from taxi.api.schema.plans import Plans
from taxi.core import metrics
from taxi.core.config import Settings
from taxi.domain import auth
from taxi.domain.errors import BadUserInput
from taxi.transport import pages

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


class TaxiGraphQL(GraphQL[Context, None]):
    def __init__(
        self, schema: Any, *, settings: Settings, plans: bool = True, **kwargs: Any
    ) -> None:
        """`plans`: answer recognised read-only queries without per-field execution
        (taxi/api/schema/plans.py); off with tracing, whose operation span they skip."""
        super().__init__(schema, **kwargs)
        self.settings = settings
        # `_schema`: the graphql-core schema, as Strawberry's docs point to for interop.
        core = schema._schema
        self.plans = Plans(core, introspection=settings.introspection) if plans else None

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
                response = await self._planned(request) or await self.run(request)
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

    async def _planned(self, request: Request) -> Response | None:
        """A JSON POST of a query a plan answers (taxi/api/schema/plans.py), answered
        without Strawberry's view (its parsing, hooks and result processing cost as
        much as the plan); None for anything else, or any doubt: then `run` serves
        it (Starlette keeps the body read here) with its own errors."""
        headers = request.headers
        if self.plans is None or request.method != "POST":
            return None
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        accept = headers.get("accept", "")
        if media != "application/json" or "multipart" in accept or "event-stream" in accept:
            return None  # other content types, incremental delivery: Strawberry's
        try:
            data = self.decode_json(await request.body())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        query, variables = data.get("query"), data.get("variables")
        name, extensions = data.get("operationName"), data.get("extensions")
        if (
            not (
                isinstance(query, str)
                and isinstance(variables, dict | None)
                and isinstance(name, str | None)
                and isinstance(extensions, dict | None)
            )
            or inputs.problem(variables) is not None
        ):
            return None
        services: Services = request.app.state.services
        try:
            document = await services.documents.resolve(query=query, extensions=extensions)
        except persisted.Refused:
            return None
        if not isinstance(document, str):
            return None
        context = await self.get_context(request, response=None)
        answer = await self.plans.answer(context, document, variables, name)
        if answer is None:
            request.state.plan_tried = True  # `execute_single` goes the full way at once
            return None
        # What Strawberry's create_response writes for {"data": ...}: same bytes, headers.
        return Response(orjson.dumps({"data": answer}), media_type="application/json")

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
            metrics.refused(name=data.operation_name, kind="unknown", code=exc.code)
            error = GraphQLError(exc.message, extensions={"code": exc.code})
            return ExecutionResult(data=None, errors=[error])
        if _is_subscription(data.query, data.operation_name):
            # Subscriptions are served over WebSocket; run over plain HTTP, the stream
            # the resolver returns surfaced as an INTERNAL_SERVER_ERROR.
            raise HTTPException(400, "Subscriptions are served over WebSocket only.")
        get_refused = kwargs["request_adapter"].method == "GET" and not self.allow_queries_via_get
        tried = getattr(kwargs["request"].state, "plan_tried", False)
        if self.plans is not None and isinstance(data.query, str) and not get_refused and not tried:
            answer = await self.plans.answer(
                kwargs["context"], data.query, data.variables, data.operation_name
            )
            if answer is not None:
                return ExecutionResult(data=answer)
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

    async def get_context(self, request: Request, response: Any) -> Context:  # type: ignore[override]
        services: Services = request.app.state.services
        header = request.headers.get("authorization")
        token = auth.strip_bearer(header) if header else None
        return Context(services=services, request=request, response=response, token=token)


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
