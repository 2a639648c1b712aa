"""The GraphQL schema's parts: object types, inputs, errors, limits. Composed with the
resolvers in `taxi.api.build` (above both: the resolvers import these types, nothing here
imports a resolver)."""
