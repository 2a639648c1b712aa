"""Business rules as plain async functions: keyword-only arguments, no GraphQL."""
