"""Benchmarks for taxi: `make bench` (or `python -m bench`) runs them all.

Each figure is measured in one run next to its baseline: the GraphQL server under
test (PostgreSQL + Redis, one uvicorn process pinned to core 0) against a bare
Starlette app on the same broadcast backend (`bench.ceiling`), with one load
generator process pinned to core 1 (`bench.loadgen`)."""
