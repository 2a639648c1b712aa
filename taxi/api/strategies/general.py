"""graphql-core's execution of a validated document: what answers any operation the
other strategies do not recognise (Strawberry's resolvers are wired into the schema it
built, so graphql-core runs them as Strawberry's own `execute` would)."""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, ExecutionResult, GraphQLSchema, execute

from taxi.api.context import Context
from taxi.api.graphql_adapter import Acyclic
from taxi.api.strawberry_adapter import is_awaitable


class General:
    __slots__ = ("core", "document", "kind", "name")

    def __init__(
        self, core: GraphQLSchema, document: DocumentNode, *, name: str | None, kind: str
    ) -> None:
        self.core = core
        self.document = document
        self.name = name
        self.kind = kind

    async def run(self, context: Context, variables: dict[str, Any] | None) -> ExecutionResult:
        result = execute(
            self.core,
            self.document,
            context_value=context,
            variable_values=variables,
            operation_name=self.name,
            is_awaitable=is_awaitable,
            executor_class=Acyclic,
        )
        if is_awaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result
