"""The one document cache: every distinct document text parsed and validated once.

graphql-core's validation of even a trivial mutation costs ~0.7 ms and its parsing
~0.1 ms, more than answering a position report; so a document is never parsed or
validated per request, by any transport or strategy. Each entry also remembers the
strategy the executor picked for each of its operations (taxi/api/executor.py), so a
repeated document costs one dictionary lookup."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    validate,
)

from taxi.api.schema.limits import MAX_TOKENS, validation_rules

# Distinct document texts kept prepared (an app sends a few dozen).
ENTRIES = 1024
# Longer texts are prepared (on a thread) but not kept: a document is limited in tokens,
# not characters (one comment can carry the whole body), so 1,024 of them could keep GiBs
# alive. Every document an app sends is a few KiB. Also the largest text registered as a
# persisted document (persisted.py).
MAX_KEPT_CHARS = 16 * 1024


class Prepared:
    """One document text: its syntax tree, or why it cannot run."""

    __slots__ = ("document", "parse_errors", "strategies", "validation_errors")

    def __init__(
        self,
        document: DocumentNode | None,
        *,
        parse_errors: list[GraphQLError] | None = None,
        validation_errors: list[GraphQLError] | None = None,
    ) -> None:
        self.document = document
        self.parse_errors = parse_errors or []
        self.validation_errors = validation_errors or []
        # Per operation name (None: the document's only operation), what answers it;
        # filled by the executor. Bounded by the document's own operations.
        self.strategies: dict[str | None, Any] = {}

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation `name` picks, as Strawberry picks it: by name, else the first
        (graphql-core then refuses a nameless pick among several, as an error)."""
        if self.document is None:
            return None
        for definition in self.document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if name is None or (definition.name is not None and definition.name.value == name):
                return definition
        return None


class DocumentCache:
    """A bounded LRU of prepared documents, keyed by their text."""

    def __init__(self, core: GraphQLSchema, *, introspection: bool) -> None:
        self.core = core
        self.rules = validation_rules(introspection=introspection)
        self._entries: OrderedDict[str, Prepared] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def prepare(self, text: str) -> Prepared:
        """`get`, with a text too long to keep prepared on a thread: graphql-core lexes in
        Python (a 60 KiB name token took 35 ms in one piece); on a thread the GIL changes
        hands every few ms, so the event loop runs between the slices."""
        if len(text) <= MAX_KEPT_CHARS:
            return self.get(text)
        return await asyncio.to_thread(self._prepare, text)

    def cached(self, text: str) -> Prepared | None:
        """The prepared document if it is kept (nothing parsed or validated here)."""
        found = self._entries.get(text)
        if found is not None:
            self._entries.move_to_end(text)
        return found

    def get(self, text: str) -> Prepared:
        if (found := self.cached(text)) is not None:
            return found
        found = self._prepare(text)
        entries = self._entries
        if len(text) <= MAX_KEPT_CHARS:
            entries[text] = found
            if len(entries) > ENTRIES:
                entries.popitem(last=False)
        return found

    def _prepare(self, text: str) -> Prepared:
        try:
            document = parse(text, max_tokens=MAX_TOKENS)
        except GraphQLError as exc:
            return Prepared(None, parse_errors=[exc])
        return Prepared(document, validation_errors=validate(self.core, document, self.rules))
