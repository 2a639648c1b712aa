"""A private Redis Cluster for tests that must break one (the failover test): six
redis-server processes (3 primaries + 3 replicas) on free loopback ports, state in a
temp dir, a short `cluster-node-timeout` so a dead primary's replica takes over fast.
CI starts its shared cluster in .ci/run the same way."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio.cluster import ClusterNode, RedisCluster

from tests.live import free_port
from tests.procs import Proc

NODES = 6  # 3 primaries, each with one replica
START_ATTEMPTS = 3
# Small, so a killed primary is failed over within a couple of seconds; not so small
# that a busy shared machine makes healthy nodes look dead.
NODE_TIMEOUT_MS = 1500


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed"
    return path


def _synced(info: str) -> bool:
    return "role:master" in info or "master_link_status:up" in info


class PrivateCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(NODES)]
        # The bus port is port+10000 by default, too high for an ephemeral port.
        bus_ports = [free_port() for _ in range(NODES)]
        self.url = "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.procs: dict[int, Proc] = {}
        for port, bus in zip(self.ports, bus_ports, strict=True):
            d = workdir / str(port)
            d.mkdir(parents=True, exist_ok=True)
            argv = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
            argv += ["--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(d)]
            argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            # Replicas sync at once, over the socket; a replica always stands for election
            # (its data is as fresh as a test needs).
            argv += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
            argv += ["--cluster-replica-validity-factor", "0"]
            self.procs[port] = Proc(f"redis-{port}", argv, d / "redis.log", {})

    def cli(self, port: int, *args: str) -> str:
        argv = [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return done.stdout + done.stderr

    async def start(self) -> None:
        for proc in self.procs.values():
            proc.start()
        for port in self.ports:
            await self._until(port, lambda out: "PONG" in out, "PING")
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        out = await asyncio.to_thread(
            self.cli, self.ports[0], "--cluster", "create", *nodes,
            "--cluster-replicas", "1", "--cluster-yes",
        )  # fmt: skip
        assert "[OK] All 16384 slots covered" in out, out
        await self.wait_ok()

    async def _until(self, port: int, ok: Callable[[str], bool], *args: str) -> str:
        proc = self.procs[port]

        async def out() -> str:
            if not proc.running:
                raise proc.failure("exited")
            return await asyncio.to_thread(self.cli, port, *args)

        return await proc.until(out, f"{args} never succeeded", ok)

    async def wait_ok(self) -> None:
        """Every live node sees the whole cluster healthy (all slots served), and every
        replica has synced with its primary (one that never did cannot take over)."""
        for port, proc in self.procs.items():
            if proc.running:
                await self._until(port, lambda out: "cluster_state:ok" in out, "CLUSTER", "INFO")
                await self._until(port, _synced, "INFO", "replication")

    async def primary_of(self, key: str) -> int:
        """The port of the primary that serves `key`'s slot now."""
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])
        try:
            await client.initialize()
            node = client.get_node_from_key(key)
            assert node is not None, f"no node serves {key!r}"
            return int(node.port)
        finally:
            await client.aclose()

    async def kill(self, port: int) -> None:
        """A crash: SIGKILL, no goodbye to the other nodes."""
        await asyncio.to_thread(self.procs[port].stop, kill=True)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(kill=True)


@asynccontextmanager
async def private_cluster(workdir: Path) -> AsyncIterator[PrivateCluster]:
    for attempt in range(START_ATTEMPTS):
        cluster = PrivateCluster(workdir)
        try:
            await cluster.start()
            break
        except AssertionError as exc:
            await asyncio.to_thread(cluster.stop)
            # A free port can be taken by someone else before the node binds it (seen
            # once in ~30 runs on a loaded machine): other ports, then.
            if "Address already in use" not in str(exc) or attempt == START_ATTEMPTS - 1:
                raise
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)
