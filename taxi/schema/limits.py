"""Document limits checked during validation, before anything executes."""

from __future__ import annotations

from typing import Any

from graphql import ArgumentNode, GraphQLError, IntValueNode, ValidationRule

MAX_FIRST = 100


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
