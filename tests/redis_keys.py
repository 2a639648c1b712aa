"""The shared Redis (REDIS_URL) and Redis Cluster (REDIS_CLUSTER_URL) are other people's
too: a developer's server may run on the same Redis. Every key a test run writes there
carries its session prefix (tests/backends.py SESSION_PREFIX, or a `sub_prefix` of it),
and whoever started the writer deletes them when it stops: the `backend` fixture after
each test, `taxi_servers` when its processes stop. conftest.py checks at the end of the
session that nothing under the prefix is left (before, a run left `taxi:signup:127.0.0.1`
counts and position hashes without expiry, and a developer's server then refused sign-ups
as "Too many sign-ups").

Private servers (tests/procs.py RedisServer, tests/rcluster.py) die with their test and
are never scanned here."""

from __future__ import annotations

import redis
from redis.cluster import ClusterNode, RedisCluster

from taxi.core.cluster import startup_nodes
from tests.backends import REDIS_CLUSTER_URL, REDIS_URL, SESSION_PREFIX


def _pattern(prefix: str) -> str:
    # Plain keys are `<prefix>:...`; position keys carry it in a hash tag, `{<prefix>:geo}:...`.
    return f"*{prefix}*"


def _clients(url: str) -> list[redis.Redis | RedisCluster]:
    """Clients for `url` when it is one of the shared services, else none."""
    if url and url == REDIS_URL:
        return [redis.Redis.from_url(url, socket_timeout=5)]
    if url and url == REDIS_CLUSTER_URL:
        nodes, options = startup_nodes(url)  # asyncio nodes: rebuilt for the sync client
        # (redis-py's sync ClusterNode has no annotations.)
        seeds = [ClusterNode(node.host, node.port) for node in nodes]  # type: ignore[no-untyped-call]
        return [RedisCluster(startup_nodes=seeds, socket_timeout=5, **options)]
    return []


def _keys(client: redis.Redis | RedisCluster, prefix: str) -> list[bytes]:
    if isinstance(client, RedisCluster):
        return list(
            client.scan_iter(match=_pattern(prefix), count=1000, target_nodes=client.PRIMARIES)
        )
    return list(client.scan_iter(match=_pattern(prefix), count=1000))


def delete_keys(url: str, prefix: str = SESSION_PREFIX) -> int:
    """Deletes the keys under `prefix` on the shared service at `url`; how many."""
    deleted = 0
    for client in _clients(url):
        with client:
            # One key at a time: on a cluster the keys live in different slots.
            deleted += sum(int(client.delete(key)) for key in _keys(client, prefix))
    return deleted


def left_behind(prefix: str = SESSION_PREFIX) -> list[str]:
    """The keys under `prefix` still on the shared services."""
    found: list[str] = []
    for url in (REDIS_URL, REDIS_CLUSTER_URL):
        for client in _clients(url):
            with client:
                found += [key.decode() for key in _keys(client, prefix)]
    return sorted(found)
