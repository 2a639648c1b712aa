"""Whether a document text parses and validates against the schema, with the limits
of PROTOCOL.md: what a persisted document must pass before it is stored.

Uncached on purpose: it runs once per document a process registers (rarely), and a
cache keyed by client text is one more place junk could fill."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError, parse, validate

from taxi.api.schema.limits import MAX_TOKENS, validation_rules
from taxi.api.strawberry_adapter import core_schema


def document_checker(schema: strawberry.Schema, *, introspection: bool) -> Callable[[str], bool]:
    core = core_schema(schema)
    rules = validation_rules(introspection=introspection)  # the executor's, the same

    def valid(document: str) -> bool:
        try:
            parsed = parse(document, max_tokens=MAX_TOKENS)
        except GraphQLError:
            return False
        return not validate(core, parsed, rules)

    return valid
