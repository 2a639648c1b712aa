"""GraphQL on the live path, through public APIs only: documents parsed and validated
once per text, queries and mutations run by Strawberry's `Schema.execute`, and
subscriptions opened and executed with graphql-core 3.3's documented subscription
pipeline (`Executor.build`, `create_source_event_stream`, `build_per_event_executor`,
`execute_subscription_event`).

Each event is executed once per (event, document, variables) in this process: a `Plan`
is shared by every subscriber with the same document and variables, and its encoded
result is cached on the event for as long as the hub delivers it. The types reachable
from Subscription read only their parent object, never the per-subscriber context, so
one execution serves them all; visibility is part of the key because the feed hands
each watcher the view it may see (one object per view and event)."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    OperationType,
    create_source_event_stream,
    execute_subscription_event,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)

from taxi.api.resolvers.subscriptions import Live
from taxi.api.schema.errors import with_codes
from taxi.api.schema.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, validation_rules
from taxi.domain.events import Event

DOCUMENT_CACHE = 1024  # distinct document texts kept parsed and validated
Errors = list[dict[str, Any]]


class Plan:
    """One (document, operation, variables) of a subscription, shared by its
    subscribers: executes an event for all of them."""

    __slots__ = ("__weakref__", "_last", "core", "document", "field", "name", "variables")

    def __init__(
        self, core: GraphQLSchema, document: DocumentNode, name: str | None, variables: Any
    ) -> None:
        self.core = core
        self.document = document
        self.name = name
        self.variables = variables
        self.field = root_field(document, name)  # for the live-subscriptions gauge
        # The view and payload of the latest event: every subscriber after the first
        # finds it here (holding the view keeps its identity from being reused).
        self._last: tuple[Any, bytes] | None = None

    def payload(self, obj: object, *, mask_internal: bool) -> bytes:
        """The result for event object `obj`, encoded: the `payload` of a result frame
        and the frame's closing brace."""
        # A fresh executor per execution: graphql-core memoizes collected subfields on
        # the executor, and per-event copies share that memo, so one long-lived executor
        # grew with every event (~1.8 KiB per first state here).
        built = Executor.build(
            self.core, self.document, raw_variable_values=self.variables, operation_name=self.name
        )
        if isinstance(built, list):  # cannot happen: coerced once when it was opened
            raise GraphQLError(built[0].message)
        result = execute_subscription_event(built.build_per_event_executor(obj))
        if not isinstance(result, ExecutionResult):
            # Our Subscription types resolve synchronously; an awaitable here is a bug.
            raise TypeError("live payload types must resolve synchronously")
        return encode(result, mask_internal=mask_internal) + b"}"

    def shared(self, event: Event, view: Any, *, mask: bool) -> bytes:
        """`payload` once per (event, view) for every subscriber of this plan."""
        last = self._last
        if last is not None and last[0] is view:
            return last[1]
        key = (self, id(view))
        data = event.frames.get(key)
        if data is None:
            data = event.frames[key] = self.payload(view, mask_internal=mask)
        self._last = (view, data)
        return data


def root_field(document: DocumentNode, name: str | None) -> str:
    operation = get_operation_ast(document, name)
    assert operation is not None, "validated: the operation exists"
    first = operation.selection_set.selections[0]
    return first.name.value if isinstance(first, FieldNode) else "unknown"


def encode(result: Any, *, mask_internal: bool) -> bytes:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = with_codes(list(result.errors), mask_internal=mask_internal)
        body["errors"] = [e.formatted for e in errors]
    if getattr(result, "extensions", None):
        body["extensions"] = result.extensions
    return orjson.dumps(body)


class GraphQL:
    def __init__(
        self, schema: strawberry.Schema, *, mask_internal: bool, introspection: bool
    ) -> None:
        self.schema = schema
        # strawberry.Schema has no public accessor for the graphql-core schema it
        # builds; `_schema` is the attribute Strawberry's docs point to for graphql-core
        # interop. Only graphql-core's public functions are called on it.
        self.core: GraphQLSchema = schema._schema
        self.mask_internal = mask_internal
        rules = [*specified_rules, *validation_rules(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self._rules = tuple(rules)
        self._documents: OrderedDict[str, DocumentNode | Errors] = OrderedDict()
        self._plans: weakref.WeakValueDictionary[tuple[int, str | None, str], Plan] = (
            weakref.WeakValueDictionary()
        )

    def errors(self, errors: list[GraphQLError]) -> Errors:
        return [dict(e.formatted) for e in with_codes(errors, mask_internal=self.mask_internal)]

    def prepare(self, query: str) -> DocumentNode | Errors:
        """Parsed and validated (the limits of PROTOCOL.md included), once per text."""
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
            return cached
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as exc:
            outcome: DocumentNode | Errors = self.errors([exc])
        else:
            problems = validate(self.core, document, self._rules)
            outcome = self.errors(problems) if problems else document
        self._documents[query] = outcome
        if len(self._documents) > DOCUMENT_CACHE:
            self._documents.popitem(last=False)
        return outcome

    @staticmethod
    def operation_type(document: DocumentNode, name: str | None) -> OperationType | None:
        operation = get_operation_ast(document, name)
        return None if operation is None else operation.operation

    async def execute(
        self, query: str, *, variables: dict[str, Any] | None, name: str | None, context: Any
    ) -> bytes:
        """A query or mutation: the encoded `payload` of its result frame."""
        result = await self.schema.execute(
            query, variable_values=variables, context_value=context, operation_name=name
        )
        return encode(result, mask_internal=self.mask_internal)

    async def open(
        self,
        document: DocumentNode,
        *,
        variables: dict[str, Any] | None,
        name: str | None,
        context: Any,
    ) -> tuple[Live[Any], Plan] | Errors:
        """Authorize and describe a subscription (its field's resolver runs once, with
        the subscriber's context); errors end it before it starts."""
        built = Executor.build(
            self.core,
            document,
            context_value=context,
            raw_variable_values=variables,
            operation_name=name,
        )
        if isinstance(built, list):
            return self.errors(built)
        stream = create_source_event_stream(built)
        if not isinstance(stream, (Live, ExecutionResult)):
            stream = await stream  # type: ignore[misc]
        if isinstance(stream, ExecutionResult):
            return self.errors(list(stream.errors or []))
        if not isinstance(stream, Live):
            raise TypeError(f"subscription resolved to {type(stream).__name__}, not Live")
        return stream, self._plan(document, name, variables)

    def _plan(self, document: DocumentNode, name: str | None, variables: Any) -> Plan:
        values = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS).decode()
        key = (id(document), name, values)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self.core, document, name, variables)
        return plan

    def first(self, plan: Plan, view: Any) -> bytes:
        """A subscriber's own first state (or one re-read after a reconnect)."""
        return plan.payload(view, mask_internal=self.mask_internal)
