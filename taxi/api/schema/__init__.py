"""The GraphQL schema: object types, inputs, errors, limits, and its composition
(`taxi.api.schema.build`, which imports the resolvers; nothing here does, so resolvers can
import the types)."""
