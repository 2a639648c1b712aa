"""GraphQL resolvers by domain: the Query, Mutation and Subscription fields, each calling
the business rules in `taxi.domain.services` and shaping their results into
`taxi.api.schema.types`."""
