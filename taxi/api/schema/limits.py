"""Document limits checked during validation, before anything executes."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions.max_aliases import create_validator as create_alias_validator
from strawberry.extensions.query_depth_limiter import create_validator

from taxi.api.schema import inputs
from taxi.domain.services.queries import MAX_FIRST

MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 2000
# Document size, checked before any other rule walks the document (DocumentSize). Without
# them, under 2,000 tokens and without an account, validation cost 400 ms of CPU for 221
# fragments on `me`, 1.7 s for 142 copies of `edges { node { rider { id } } }`, and
# without end for 20 fragments each spreading the next three (strawberry's depth and alias
# walks follow every path) or 12 spreading each other; refused now in 1–14 ms, mostly the
# parse (2 loaded cores). GraphiQL's introspection expands to ~240 selections and
# compares no pair; the apps' documents use no fragments and under 40 selections.
MAX_FRAGMENTS = 20
MAX_SELECTIONS = 500
MAX_SAME_KEY_PAIRS = 100  # ~2 ms at the limit; quadratic in same-name fields side by side


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


def oversize(document: DocumentNode) -> str | None:
    """Why the document is over the size limits, or None; linear in its length."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if len(fragments) > MAX_FRAGMENTS:
        return f"A document may define at most {MAX_FRAGMENTS} fragments."
    sizes: dict[str, int] = {}
    for definition in document.definitions:
        if isinstance(definition, ExecutableDefinitionNode):
            try:
                size = _expanded(definition.selection_set, fragments, sizes, [])
            except _Cycle as cycle:
                return f"Cannot spread fragment '{cycle.args[0]}' within itself."
            if size > MAX_SELECTIONS:
                return (
                    f"A document may select at most {MAX_SELECTIONS} fields"
                    f" (fragments counted where spread); {size} found."
                )
            if _same_key_pairs(definition.selection_set, fragments) > MAX_SAME_KEY_PAIRS:
                return (
                    "Too many fields with the same name (or alias) side by side:"
                    f" at most {MAX_SAME_KEY_PAIRS} pairs of them may be compared."
                )
    return None


def _same_key_pairs(top: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> int:
    """The pairs of fields that graphql-core's OverlappingFieldsCanBeMerged compares
    (at most): fields answering to one response key, side by side once inline fragments
    and fragment spreads are flattened, and the same again within their merged
    selections. Linear in the expanded size (bounded by MAX_SELECTIONS first)."""
    pairs = 0
    merged: list[list[SelectionSetNode]] = [[top]]
    while merged:
        groups: dict[str, list[FieldNode]] = {}
        spread: set[str] = set()  # graphql-core too compares a fragment once per level
        flat = merged.pop()
        while flat:
            for selection in flat.pop().selections:
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    groups.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    flat.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = fragments.get(name)  # unknown: refused by a later rule
                    if fragment is not None and name not in spread:
                        spread.add(name)
                        flat.append(fragment.selection_set)
        for fields in groups.values():
            pairs += len(fields) * (len(fields) - 1) // 2
            below = [f.selection_set for f in fields if f.selection_set is not None]
            if below:
                merged.append(below)
    return pairs


class _Cycle(Exception):
    """A fragment spread within itself (reported here: the counts below need a tree)."""


def _expanded(
    top: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    sizes: dict[str, int],
    path: list[str],
) -> int:
    """Selections under `top`, each fragment spread counted as its own selections; a
    fragment's count is kept in `sizes`, so each is walked once. Recursion only follows
    fragment spreads (at most MAX_FRAGMENTS deep); nesting is walked with a stack."""
    total = 0
    stack = [top]
    while stack:
        for selection in stack.pop().selections:
            total += 1
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in path:
                    raise _Cycle(name)
                fragment = fragments.get(name)
                if fragment is not None:
                    if name not in sizes:
                        sizes[name] = _expanded(
                            fragment.selection_set, fragments, sizes, [*path, name]
                        )
                    total += sizes[name]
            elif isinstance(selection, (FieldNode, InlineFragmentNode)) and selection.selection_set:
                stack.append(selection.selection_set)
    return total


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


def validation_rules(*, max_depth: int, max_aliases: int) -> list[type[ASTValidationRule]]:
    """Built once per schema. strawberry's QueryDepthLimiter and MaxAliasesLimiter build
    new rule classes for every operation, and the validation cache is keyed by the
    rules: it never hit (every request validated again), and each live subscription
    kept ~7 KiB of rule classes alive."""
    return [
        DocumentSize,
        NonEmptySelectionSets,
        _sized(_safe_depth_rule(max_depth)),
        _sized(create_alias_validator(max_aliases)),
        MaxPageSize,
        InputLiterals,
    ]
