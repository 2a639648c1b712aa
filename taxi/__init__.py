"""taxi: a real-time ride-hailing backend served as one GraphQL schema."""

__version__ = "0.1.0"
