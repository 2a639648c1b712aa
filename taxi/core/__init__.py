"""Core: configuration, the database engine, Redis clients and broadcast, logs, metrics,
tracing, background tasks and the collector's policy. Imports nothing else of taxi."""
