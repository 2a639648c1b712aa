"""Document size: what graphql-core's and strawberry's validation cost grows with,
counted on the AST in one linear pass before any rule walks the document."""

from __future__ import annotations

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

# Document size, checked before any other rule walks the document (limits.DocumentSize). Without
# them, under 2,000 tokens and without an account, validation cost 400 ms of CPU for 221
# fragments on `me`, 1.7 s for 142 copies of `edges { node { rider { id } } }`, and
# without end for 20 fragments each spreading the next three (strawberry's depth and alias
# walks follow every path) or 12 spreading each other; refused now in 1 to 14 ms, mostly the
# parse (2 loaded cores). GraphiQL's introspection expands to ~240 selections and
# compares no pair; the apps' documents use no fragments and under 40 selections.
MAX_FRAGMENTS = 20
MAX_SELECTIONS = 500
MAX_SAME_KEY_PAIRS = 100  # ~2 ms at the limit; quadratic in same-name fields side by side


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
