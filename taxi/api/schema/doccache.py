"""Strawberry's parse and validation caches, for documents of an ordinary size only.

Both are LRUs of 1,024 entries keyed by the client's text (validation: by its parsed
document, which holds the text). A document is limited in tokens, not characters: one
comment or string literal can carry the whole 8 MiB body, and 1,024 such documents
kept ~8 GiB alive. Larger documents are parsed (on a thread) and validated each time
instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from graphql import parse
from strawberry.extensions import ParserCache, ValidationCache

# Every document the apps send is a few KiB; this leaves room for generated ones. Also
# the size up to which a text is tried as a recognised read or position report (plans,
# fast path) and registered as a persisted document: each parse of a larger one costs
# up to 0.65 µs per character (a 60 KiB comment: 40 ms), so an unauthenticated flood
# of such texts pays for one parse per request, not three or four.
MAX_CACHED_CHARS = 16 * 1024


def _ordinary(query: str | None) -> bool:
    return query is not None and len(query) <= MAX_CACHED_CHARS


class BoundedParserCache(ParserCache):
    async def on_parse(self) -> AsyncIterator[None]:  # type: ignore[override]
        ctx, query = self.execution_context, self.execution_context.query
        if query is None or _ordinary(query):
            for _ in super().on_parse():
                yield
            return
        # Uncached, and on a thread: graphql-core lexes in Python (a 60 KiB name token
        # took 35 ms in one piece). On a thread the GIL changes hands every few ms, so
        # the event loop (/healthz, every other request) runs between the slices.
        ctx.graphql_document = await asyncio.to_thread(parse, query, **ctx.parse_options)
        yield


class BoundedValidationCache(ValidationCache):
    def on_validate(self) -> Iterator[None]:
        if _ordinary(self.execution_context.query):
            yield from super().on_validate()
        else:
            yield  # Strawberry validates it, uncached
