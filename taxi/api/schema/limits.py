"""Document limits checked during validation, before anything executes."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    IntValueNode,
    ListValueNode,
    NoSchemaIntrospectionCustomRule,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    specified_rules,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions.max_aliases import create_validator as create_alias_validator
from strawberry.extensions.query_depth_limiter import create_validator

from taxi.api.schema import inputs
from taxi.api.schema.size import oversize
from taxi.domain.services.queries import MAX_FIRST

MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 2000


class MaxPageSize(ValidationRule):
    """`first` written into the document over the cap fails validation (HTTP 400).
    A `first` passed as a variable is checked by the resolver (BAD_USER_INPUT)."""

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        value = node.value
        if node.name.value == "first" and isinstance(value, IntValueNode):
            if int(value.value) > MAX_FIRST:
                self.report_error(
                    GraphQLError(
                        f"'first' may not exceed {MAX_FIRST} (the page-size limit).",
                        node,
                    )
                )


class InputLiterals(ValidationRule):
    """Lists and strings written into the document obey the rules variables do
    (taxi/api/schema/inputs.py): at most 100 items, no NUL or lone surrogate."""

    def enter_list_value(self, node: ListValueNode, *_args: Any) -> None:
        if len(node.values) > inputs.MAX_LIST_ITEMS:
            self.report_error(
                GraphQLError(
                    f"A list may hold at most {inputs.MAX_LIST_ITEMS} items.",
                    node,
                    extensions={"code": "BAD_USER_INPUT"},
                )
            )

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if inputs.bad_text(node.value):
            self.report_error(
                GraphQLError(inputs.BAD_TEXT, node, extensions={"code": "BAD_USER_INPUT"})
            )


class NonEmptySelectionSets(ValidationRule):
    """The GraphQL grammar wants at least one selection, but graphql-core 3.3 parses `{}`;
    such a document is refused here (HTTP 400) instead of crashing the depth limiter."""

    def enter_selection_set(self, node: SelectionSetNode, *_args: Any) -> None:
        if not node.selections:
            self.report_error(GraphQLError("A selection set may not be empty.", node))


class DocumentSize(ValidationRule):
    """A document over the size limits (taxi/api/schema/size.py) stops the validation
    before any other rule walks it: graphql-core's overlapping-fields check is quadratic
    and strawberry's depth and alias counts exponential in the fragments, and every one
    of them runs without an account."""

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        problem = oversize(node)
        if problem is not None:
            # The one way a rule can end graphql-core's walk (as its error limit does):
            # validate() catches it and returns it as the document's error.
            raise ValidationAbortedError(problem, node)


def _sized(rule: type[ValidationRule]) -> type[ValidationRule]:
    """A rule that does its work when constructed (before the walk that DocumentSize
    ends), run only on documents within the size limits."""

    class Sized(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if oversize(context.document) is None:
                rule(context)

    Sized.__name__ = f"Sized{rule.__name__}"
    return Sized


def _safe_depth_rule(max_depth: int) -> type[ValidationRule]:
    """strawberry's QueryDepthLimiter rule, minus its crashes (an INTERNAL_SERVER_ERROR for
    a client's fault): its walk raises on an empty selection set (ValueError) or an
    unknown fragment (KeyError). Those documents are refused by NonEmptySelectionSets and
    graphql's KnownFragmentNames instead, so nothing that skipped the depth check runs."""
    depth_rule = create_validator(max_depth, None)

    class SafeDepthRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            # The depth rule does all its work (reporting to `context`) when constructed.
            with suppress(ValueError, KeyError):
                depth_rule(context)

    return SafeDepthRule


def validation_rules(*, introspection: bool) -> tuple[type[ASTValidationRule], ...]:
    """Every rule a document must pass, assembled here alone (the executor's document
    cache validates with them, once per distinct document): the size limits first (they
    end the walk before the costly rules run), GraphQL's own, the limits of PROTOCOL.md
    and, with INTROSPECTION=0, no introspection. Built once per executor: strawberry's
    QueryDepthLimiter and MaxAliasesLimiter build new rule classes per call."""
    rules: list[type[ASTValidationRule]] = [
        DocumentSize,
        *specified_rules,
        NonEmptySelectionSets,
        _sized(_safe_depth_rule(MAX_DEPTH)),
        _sized(create_alias_validator(MAX_ALIASES)),
        MaxPageSize,
        InputLiterals,
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)
