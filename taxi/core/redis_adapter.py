"""The redis-py adapter: the undocumented names of its asyncio clients that taxi needs, in
one place: two of the cluster client's for the sharded pub/sub backend
(taxi/core/cluster.py), and the pure-Python reply parser the cluster client keeps.

redis-py has no public way to ask a cluster client for a fresh slot map once it has
initialised (`RedisCluster.initialize()` is then a no-op), nor to see which nodes a
`ClusterPubSub` holds connections to; both are needed to notice a failover and heal.
redis-py parses replies with hiredis (C) when it is installed, as it is here: its pure-Python
RESP3 parser and the timeouts around it were ~6 % of a rush-hour server's CPU. A cluster's
clients keep the Python parser (`CLUSTER_PARSER`): with hiredis, a process's sharded pub/sub
connection to a killed primary went unnoticed in 2 of 7 failover runs (none of 13 without;
docs/performance.md), and that process's subscribers kept the state from before.

One more thing it knows of redis-py's connections: where they write (`closed_under`).

`INTERNALS` names them; tests/test_adapters.py fails when they move, and redis has an upper
bound in pyproject.toml."""

from __future__ import annotations

import asyncio.selector_events
import asyncio.streams

import redis.asyncio.connection
from redis._parsers import _AsyncRESP3Parser
from redis.asyncio.cluster import ClusterPubSub, NodesManager, RedisCluster

# The reply parser of a cluster's connections: see above.
CLUSTER_PARSER = _AsyncRESP3Parser

# (class, attribute) pairs used below; the test checks them on real objects.
INTERNALS: tuple[tuple[type, str], ...] = (
    (RedisCluster, "nodes_manager"),
    (NodesManager, "initialize"),
    (ClusterPubSub, "node_pubsub_mapping"),
    (NodesManager, "connection_kwargs"),
    (NodesManager, "startup_nodes"),
)


def python_parser(cluster: RedisCluster) -> RedisCluster:
    """`cluster`, its connections to come parsing with `CLUSTER_PARSER`: RedisCluster
    takes no `parser_class`, but its nodes' connections are made from these options (the
    startup nodes' copies, and the manager's for nodes it learns of later)."""
    manager = cluster.nodes_manager
    manager.connection_kwargs["parser_class"] = CLUSTER_PARSER
    for node in manager.startup_nodes.values():
        node.connection_kwargs["parser_class"] = CLUSTER_PARSER
    return cluster


async def refresh_slots(cluster: RedisCluster) -> None:
    """Ask the cluster for its slot map again (a replica may have been promoted)."""
    await cluster.nodes_manager.initialize()


def pubsub_nodes(pubsub: ClusterPubSub) -> frozenset[str]:
    """The nodes (by name) `pubsub` is subscribed on: redis-py moves channels to another
    node by itself after a slot map refresh, and messages in between may be gone."""
    return frozenset(pubsub.node_pubsub_mapping)


# Where a command writes to its connection: redis-py's connection, asyncio's stream and
# transport beneath it.
_WRITERS = frozenset(
    m.__file__ for m in (redis.asyncio.connection, asyncio.streams, asyncio.selector_events)
)


def closed_under(exc: BaseException) -> bool:
    """`exc` is a connection closed under its command, not a bug: an AttributeError or
    TypeError raised where the command writes. On a ClusterDownError or SlotNotCoveredError
    (mid-failover) redis-py's cluster client closes every node's connections, those of
    commands in flight included, and one about to write finds its `_writer` gone
    ("'NoneType' object has no attribute 'writelines'"); redis-py #4287 names the same leak
    on Python 3.12+ for a connection its peer reset."""
    if not isinstance(exc, (AttributeError, TypeError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename in _WRITERS
