"""Whether a document text parses and validates against the schema, with the limits
of PROTOCOL.md: what a persisted document must pass before it is stored.

Uncached on purpose: it runs once per document a process registers (rarely), and a
cache keyed by client text is one more place junk could fill."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule, parse, specified_rules, validate

from taxi.api.schema.limits import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, validation_rules


def document_checker(schema: strawberry.Schema, *, introspection: bool) -> Callable[[str], bool]:
    # graphql-core's schema: `_schema` is what Strawberry documents for interop.
    core = schema._schema
    rules = [*specified_rules, *validation_rules(max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES)]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)

    def valid(document: str) -> bool:
        try:
            parsed = parse(document, max_tokens=MAX_TOKENS)
        except GraphQLError:
            return False
        return not validate(core, parsed, rules)

    return valid
