"""The redis-py adapter: the two undocumented names of its asyncio cluster client that the
sharded pub/sub backend (taxi/core/cluster.py) needs, in one place.

redis-py has no public way to ask a cluster client for a fresh slot map once it has
initialised (`RedisCluster.initialize()` is then a no-op), nor to see which nodes a
`ClusterPubSub` holds connections to; both are needed to notice a failover and heal.
`INTERNALS` names them; tests/test_adapters.py fails when they move, and redis has an upper
bound in pyproject.toml."""

from __future__ import annotations

from redis.asyncio.cluster import ClusterPubSub, NodesManager, RedisCluster

# (class, attribute) pairs used below; the test checks them on real objects.
INTERNALS: tuple[tuple[type, str], ...] = (
    (RedisCluster, "nodes_manager"),
    (NodesManager, "initialize"),
    (ClusterPubSub, "node_pubsub_mapping"),
)


async def refresh_slots(cluster: RedisCluster) -> None:
    """Ask the cluster for its slot map again (a replica may have been promoted)."""
    await cluster.nodes_manager.initialize()


def pubsub_nodes(pubsub: ClusterPubSub) -> frozenset[str]:
    """The nodes (by name) `pubsub` is subscribed on: redis-py moves channels to another
    node by itself after a slot map refresh, and messages in between may be gone."""
    return frozenset(pubsub.node_pubsub_mapping)
