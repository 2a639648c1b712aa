"""What this process runs on, named without secrets: the startup log line says which
database and which Redis (kind and address), `/healthz` says only the kinds.

An operator who started the server against the wrong database or without Redis should
see it at once; nobody reading either may learn a password, so addresses are rebuilt
from their parts (host, port, database), never printed from the URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import make_url

from taxi.core.cluster import startup_nodes
from taxi.core.config import Settings


@dataclass(frozen=True, slots=True)
class Backends:
    database: str  # "sqlite" or "postgresql"
    database_at: str  # a file, or host:port/database
    broadcast: str  # "memory", "redis" or "redis-cluster"
    broadcast_at: str  # "in-process", host:port/db, or the cluster's seed nodes

    def line(self) -> str:
        return (
            f"database {self.database} ({self.database_at}), "
            f"broadcast {self.broadcast} ({self.broadcast_at})"
        )


def describe(settings: Settings) -> Backends:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        database, database_at = "sqlite", url.database or ":memory:"
    else:
        database = url.get_backend_name()
        database_at = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    if settings.redis_cluster_url:
        nodes, _ = startup_nodes(settings.redis_cluster_url)
        broadcast, broadcast_at = "redis-cluster", ",".join(f"{n.host}:{n.port}" for n in nodes)
    elif settings.redis_url:
        parts = urlsplit(settings.redis_url)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"
        broadcast, broadcast_at = "redis", where
    else:
        broadcast, broadcast_at = "memory", "in-process"
    return Backends(database, database_at, broadcast, broadcast_at)
