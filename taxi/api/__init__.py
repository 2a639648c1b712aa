"""API: the GraphQL schema, its resolvers, the typed context, persisted documents and the
one executor every transport calls."""
