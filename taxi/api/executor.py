"""The one executor: every GraphQL operation, whichever transport brought it (HTTP
GET/POST/multipart: taxi/transport/http.py; a WebSocket `subscribe`:
taxi/transport/live/operations.py), takes this path:

    resolve the document (text, persisted hash, trusted manifest: persisted.py)
    -> the prepared document, parsed and validated once per text (prepared.py)
    -> the operation's strategy, chosen once per document and operation
       (strategies/: a compiled plan, a direct handler, or graphql-core's execution;
        a subscription is opened through the same prepared document)
    -> one metric, one log line (hot reports: tallied), one trace span, error codes.

Transports only decode their framing and write the `Answer` out."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import strawberry
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    is_non_null_type,
)

from taxi.api import persisted
from taxi.api.answer import OK, Answer, BadRequest, first_code
from taxi.api.context import Context
from taxi.api.prepared import DocumentCache, Prepared
from taxi.api.schema import inputs
from taxi.api.schema.errors import PRE_EXECUTION_CODES, with_codes
from taxi.api.strategies import Strategy
from taxi.api.strategies.general import General
from taxi.api.strategies.live import LiveQueries
from taxi.api.strategies.position import PositionReport
from taxi.api.strategies.reads import Plan
from taxi.api.strawberry_adapter import core_schema
from taxi.core import metrics
from taxi.core.logs import Tally, operation_line
from taxi.core.tracing import OperationSpan
from taxi.domain import admission
from taxi.domain.admission import SHEDDABLE
from taxi.domain.errors import BadUserInput

EVERY = frozenset(OperationType)
_PLURAL = {
    OperationType.QUERY: "queries",
    OperationType.MUTATION: "mutations",
    OperationType.SUBSCRIPTION: "subscriptions",
}


class Executor:
    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        mask_internal: bool,
        introspection: bool,
        plans: bool = True,
        tracer: Any = None,
    ) -> None:
        """`plans`: answer recognised reads and reports by their own strategies (off:
        every operation by graphql-core's execution, which tests compare them with)."""
        self.core = core_schema(schema)
        self.documents = DocumentCache(self.core, introspection=introspection)
        self.live = LiveQueries(self.core, plans=plans)
        self.mask_internal = mask_internal
        self.plans = plans
        self.tracer = tracer
        self.tally = Tally()

    def coded(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return with_codes(errors, mask_internal=self.mask_internal)

    async def run(
        self,
        context: Context,
        *,
        query: object,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        extensions: dict[str, Any] | None,
        allowed: Collection[OperationType] = EVERY,
        via: str = "WebSocket",
    ) -> Answer:
        """One operation. Raises BadRequest for what `via` cannot run at all."""
        if (reason := inputs.problem(variables)) is not None:
            # Before graphql-core coerces them (seconds for a 600,000-item list).
            error = GraphQLError(reason, extensions={"code": BadUserInput.code})
            return self._refused(operation_name, "unknown", [error], status=400)
        try:
            text = await context.services.documents.resolve(query=query, extensions=extensions)
        except persisted.Refused as exc:
            error = GraphQLError(exc.message, extensions={"code": exc.code})
            # A GraphQL answer (200): APQ clients read the code and send the document.
            return self._refused(operation_name, "unknown", [error], status=200, no_store=True)
        if not isinstance(text, str) or not text:
            raise BadRequest("No GraphQL query found in the request")
        prepared = await self.documents.prepare(text)
        if prepared.parse_errors:
            return self._refused(operation_name, "unknown", self.coded(prepared.parse_errors))
        operation = prepared.operation(operation_name)
        if operation is None:
            raise BadRequest(
                "Can't get GraphQL operation type"
                if operation_name is None
                else f'Unknown operation named "{operation_name}".'
            )
        kind = operation.operation
        name = operation.name.value if operation.name else operation_name
        if kind not in allowed:
            if kind is OperationType.SUBSCRIPTION:
                raise BadRequest("Subscriptions are served over WebSocket only.")
            raise BadRequest(f"{_PLURAL[kind]} are not allowed when using {via}")
        if prepared.validation_errors:
            return self._refused(name, kind.value, self.coded(prepared.validation_errors))
        if kind is OperationType.SUBSCRIPTION:
            return await self._subscribe(prepared, operation_name, name, variables, context)
        return await self._execute(prepared, operation_name, name, kind.value, variables, context)

    async def _execute(
        self,
        prepared: Prepared,
        requested: str | None,
        name: str | None,
        kind: str,
        variables: dict[str, Any] | None,
        context: Context,
    ) -> Answer:
        chosen = prepared.strategies.get(requested)
        if chosen is None:
            chosen = prepared.strategies[requested] = self._choose(prepared, requested, kind)
        special, general = chosen
        started = time.perf_counter()
        span = OperationSpan(self.tracer) if self.tracer is not None else None
        result: ExecutionResult | None = None
        try:
            if special is not None and self.plans:
                result = await special.run(context, variables)
            if result is None:
                result = await general.run(context, variables)
        finally:
            answer = self._answer(result, special, name, kind, started, span)
        return answer

    def submit(
        self, context: Context, payload: dict[str, Any], done: Callable[[Answer | None], None]
    ) -> bool:
        """`run` for an operation whose strategy answers without a task of its own (the
        position report: thousands a second, each a task, a dozen coroutines and their
        collections otherwise): the same checks, from the same prepared document and
        strategy, then `done` gets the Answer (None: shutting down, nothing to answer).
        False: nothing happened, `run` it (anything else, a document not prepared yet,
        a persisted one, a traced process). `payload`: a WebSocket `subscribe`'s."""
        query, variables = payload.get("query"), payload.get("variables")
        operation_name = payload.get("operationName")
        if (
            not self.plans
            or self.tracer is not None
            or not isinstance(query, str)
            or not context.services.documents.as_sent(payload.get("extensions"))
        ):
            return False
        prepared = self.documents.cached(query)
        chosen = None if prepared is None else prepared.strategies.get(operation_name)
        if chosen is None:
            return False  # its first run prepares and chooses
        assert prepared is not None
        special = chosen[0]
        if not isinstance(special, PositionReport):
            return self._turned_away(prepared, operation_name, done)
        # No inputs.problem scan: the report takes only variables it checks whole (one
        # position, three known keys, numbers), and declines anything else. The name is
        # the chosen operation's (`run` reads it off the operation).
        name = special.name if special.name is not None else operation_name
        started = time.perf_counter()

        def answered(result: ExecutionResult | None) -> None:
            if result is None:
                done(None)
            else:
                done(self._answer(result, special, name, special.kind, started, None))

        return special.submit(context, variables, answered)

    def _turned_away(
        self, prepared: Prepared, requested: str | None, done: Callable[[Answer | None], None]
    ) -> bool:
        """A new requestTrip, signUp, logIn or estimateFare (alone in its operation) while
        the process is saturated: refused now, as its resolver would refuse it first thing
        (taxi.domain.admission), without a task that waits a loop pass for it. False:
        nothing happened, `run` it."""
        operation = prepared.operation(requested)
        assert operation is not None
        (field, *others) = operation.selection_set.selections
        if others or not isinstance(field, FieldNode) or field.name.value not in SHEDDABLE:
            return False
        root = self.core.get_root_type(operation.operation)
        refused = None if root is None else admission.refusal(field.name.value)
        if refused is None or root is None:
            return False
        key = field.alias.value if field.alias else field.name.value
        error = GraphQLError(refused.message, nodes=[field], path=[key], original_error=refused)
        nullable = not is_non_null_type(root.fields[field.name.value].type)
        result = ExecutionResult({key: None} if nullable else None, [error])
        name = operation.name.value if operation.name else requested
        done(self._answer(result, None, name, operation.operation.value, time.perf_counter(), None))
        return True

    def _answer(
        self,
        result: ExecutionResult | None,
        special: Strategy | None,
        name: str | None,
        kind: str,
        started: float,
        span: OperationSpan | None,
    ) -> Answer:
        """One operation's end, however it ran: its metric, log line (hot reports:
        tallied) and span, its errors coded. `result` None: it raised (counted, and the
        exception goes on)."""
        errors = self.coded(result.errors) if result and result.errors else None
        code = first_code(errors) if result is not None else "INTERNAL_SERVER_ERROR"
        seconds = time.perf_counter() - started
        label = metrics.operation(name=name, kind=kind, code=code, seconds=seconds)
        if span is not None:
            span.end(kind=kind, name=label, code=code)
        if code == OK and isinstance(special, PositionReport):
            self.tally.add(label, kind, seconds)  # thousands a second: no line each
        else:
            operation_line(name, kind, seconds, sorted({first_code([e]) for e in errors or ()}))
        if result is None:
            return Answer(None, None)
        data = result.data
        pre_execution = data is None and any(
            e.path is None and (e.extensions or {}).get("code") in PRE_EXECUTION_CODES
            for e in errors or ()
        )
        return Answer(data, errors, status=400 if pre_execution else 200)

    def _choose(
        self, prepared: Prepared, requested: str | None, kind: str
    ) -> tuple[Strategy | None, General]:
        """The strategies for one operation of a valid document: a special one when it
        recognises the operation (it may still decline a request), then graphql-core."""
        document = prepared.document
        assert document is not None
        operation = prepared.operation(requested)
        assert operation is not None
        general = General(self.core, document, name=requested, kind=kind)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if requested is None and len(operations) > 1:
            return None, general  # graphql-core says that the name is missing
        special: Strategy | None = PositionReport.recognise(operation) or Plan.compile(
            self.core, document, operation
        )
        return special, general

    async def _subscribe(
        self,
        prepared: Prepared,
        requested: str | None,
        name: str | None,
        variables: dict[str, Any] | None,
        context: Context,
    ) -> Answer:
        assert prepared.document is not None
        operation = prepared.operation(requested)
        assert operation is not None
        opened = await self.live.open(
            prepared.document, operation, variables=variables, context=context
        )
        if isinstance(opened, list):
            return self._refused(name, "subscription", self.coded(opened), validated=True)
        metrics.operation(name=name, kind="subscription", code=OK, seconds=None)
        return Answer(None, None, live=opened)

    def _refused(
        self,
        name: object,
        kind: str,
        errors: list[GraphQLError],
        *,
        status: int = 400,
        no_store: bool = False,
        validated: bool = False,
    ) -> Answer:
        """Refused before anything ran: counted and logged like any operation; only a
        validated document's name may take a metric label (junk names never crowd out
        real ones)."""
        code = first_code(errors)
        if validated:  # e.g. a subscription its resolver refused
            metrics.operation(name=name, kind=kind, code=code, seconds=None)
        else:
            metrics.refused(name=name, kind=kind, code=code)
        operation_line(name if isinstance(name, str) else None, kind, 0.0, [code])
        return Answer(None, errors, status=status, executed=False, no_store=no_store)
