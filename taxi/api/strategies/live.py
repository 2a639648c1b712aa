"""A subscription's execution, shared: opened once per subscriber through graphql-core
3.3's documented subscription pipeline (`Executor.build`, with taxi.api.graphql_adapter's
acyclic executor; `create_source_event_stream`), then each event executed once per
(event, document, variables) in this process: by a compiled plan (render.py, as
recognised reads are) when the selection is plain fields, else by graphql-core
(`build_per_event_executor`, `execute_subscription_event`).

A `LiveQuery` is shared by every subscriber with the same document and variables, and
its encoded result is cached on the event for as long as the hub delivers it. The types
reachable from Subscription read only their parent object, never the per-subscriber
context, so one execution serves them all; visibility is part of the key because the
feed hands each watcher the view it may see (one object per view and event)."""

from __future__ import annotations

import weakref
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    create_source_event_stream,
    execute_subscription_event,
)

from taxi.api.context import Context
from taxi.api.graphql_adapter import Acyclic
from taxi.api.resolvers.subscriptions import Live
from taxi.api.schema.errors import with_codes
from taxi.api.strategies.render import Fallback, Render, collect, renderer
from taxi.domain.events import Event


def encode(result: ExecutionResult, *, mask_internal: bool) -> bytes:
    """A result as the `payload` of a result frame (or an HTTP body)."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = with_codes(list(result.errors), mask_internal=mask_internal)
        body["errors"] = [e.formatted for e in errors]
    if result.extensions:
        body["extensions"] = result.extensions
    return orjson.dumps(body)


class LiveQuery:
    """One (document, operation, variables) of a subscription, shared by its
    subscribers: executes an event for all of them."""

    __slots__ = (
        "__weakref__",
        "_compiled",
        "_last",
        "core",
        "document",
        "field",
        "name",
        "variables",
    )

    def __init__(
        self,
        core: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Any,
        *,
        plans: bool = True,
    ) -> None:
        self.core = core
        self.document = document
        self.name = operation.name.value if operation.name else None
        self.variables = variables
        first = operation.selection_set.selections[0]  # for the live-subscriptions gauge
        self.field = first.name.value if isinstance(first, FieldNode) else "unknown"
        # The view and payload of the latest event: every subscriber after the first
        # finds it here (holding the view keeps its identity from being reused).
        self._last: tuple[Any, bytes] | None = None
        self._compiled = _compile(core, document, operation) if plans else None

    def payload(self, obj: object, *, mask_internal: bool) -> bytes:
        """The result for event object `obj`, encoded: the `payload` of a result frame
        and the frame's closing brace."""
        if self._compiled is not None:
            key, render = self._compiled
            try:
                return orjson.dumps({"data": {key: render(obj)}}) + b"}"
            except Fallback:
                pass  # a value only graphql-core completes (or its error): below
        # A fresh executor per execution: graphql-core memoizes collected subfields on
        # the executor, and per-event copies share that memo, so one long-lived executor
        # grew with every event (~1.8 KiB per first state here).
        built = Acyclic.build(
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
        """`payload` once per (event, view) for every subscriber of this query."""
        last = self._last
        if last is not None and last[0] is view:
            return last[1]
        key = (self, id(view))
        data = event.frames.get(key)
        if data is None:
            data = event.frames[key] = self.payload(view, mask_internal=mask)
        self._last = (view, data)
        return data


def _compile(
    core: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> tuple[str, Render] | None:
    """The subscription's one root field rendered by a compiled plan (render.py), as for
    recognised reads: a car's position goes to its rider every 2-4 s, and graphql-core's
    execution of each one cost more than everything else the event does. Strawberry
    resolves a subscription's field to the event itself. None: graphql-core's."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = core.subscription_type
    if root is None:
        return None
    try:
        fields = collect(root.name, [operation.selection_set], fragments)
        if len(fields) != 1:
            return None
        ((key, nodes),) = fields.items()
        field = root.fields.get(nodes[0].name.value)
        if field is None:  # __typename
            return None
        return key, renderer(field.type, nodes, fragments)
    except Fallback:
        return None


class LiveQueries:
    """Opens subscriptions; one `LiveQuery` per distinct (document, operation,
    variables) while any subscriber holds it."""

    def __init__(self, core: GraphQLSchema, *, plans: bool = True) -> None:
        self.core = core
        self.plans = plans
        self._shared: weakref.WeakValueDictionary[tuple[int, str | None, str], LiveQuery] = (
            weakref.WeakValueDictionary()
        )

    async def open(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        *,
        variables: dict[str, Any] | None,
        context: Context,
    ) -> tuple[Live[Any], LiveQuery] | list[GraphQLError]:
        """Authorize and describe a subscription (its field's resolver runs once, with
        the subscriber's context); errors end it before it starts."""
        name = operation.name.value if operation.name else None
        built = Acyclic.build(
            self.core,
            document,
            context_value=context,
            raw_variable_values=variables,
            operation_name=name,
        )
        if isinstance(built, list):
            return built
        stream = create_source_event_stream(built)
        if not isinstance(stream, (Live, ExecutionResult)):
            stream = await stream  # type: ignore[misc]
        if isinstance(stream, ExecutionResult):
            return list(stream.errors or [])
        if not isinstance(stream, Live):
            raise TypeError(f"subscription resolved to {type(stream).__name__}, not Live")
        return stream, self.shared(document, operation, variables)

    def shared(
        self, document: DocumentNode, operation: OperationDefinitionNode, variables: Any
    ) -> LiveQuery:
        values = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS).decode()
        name = operation.name.value if operation.name else None
        key = (id(document), name, values)
        query = self._shared.get(key)
        if query is None:
            query = self._shared[key] = LiveQuery(
                self.core, document, operation, variables, plans=self.plans
            )
        return query
