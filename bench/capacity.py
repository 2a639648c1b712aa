"""`python -m bench.capacity`: the figures behind docs/performance.md's capacity model, on a private
Redis Cluster (3 primaries + 3 replicas, tests/rcluster.py) and a throw-away database.

1. Fan-out, 1 vs 2 server processes: N sockets subscribed to `tripUpdated` of one
   trip, split evenly across the processes (pinned to cores 0 and 1); events are
   SPUBLISHed one at a time (the next once every socket got the previous one).
   Deliveries/s, server CPU per delivery, RSS per subscribed socket, Redis CPU.
2. Redis alone: CPU (INFO cpu deltas, summed over all six nodes) per 10,000 one-to-one
   deliveries (SPUBLISH to a channel one connection listens to) and per 1,000 position
   reports (GEOADD into a hash-tagged cell key + SPUBLISH to the trip's location
   channel, one listener), sent pipelined as the servers would.
3. `reportLocation` through the API (one process): server CPU per report, reports/s.

The load generator is this process (unpinned): with two server processes on two
cores it competes with them, so the 2-process throughput is a floor."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop
from redis.asyncio.cluster import RedisCluster

from bench.gqlws import connect
from bench.loadgen import SUB_UPDATED, bounded
from bench.net import HTTP, WS
from bench.prepare import ROOT, Database, Server, fanout_cast, plain_dsn
from bench.proc import cpu_seconds, raise_open_files, rss_kib, settle
from taxi.core.cluster import ShardedRedisBackend, cluster_client
from tests import gqlws
from tests.rcluster import private_cluster

UPDATE = (
    """mutation U($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { id } }"""
)
REPORT = """mutation R($t: ID!, $l: LocationInput!) {
  reportLocation(tripId: $t, location: $l) { recordedAt } }"""
EVENT_TIMEOUT = 30.0
REPORT_CLIENTS = 8  # concurrent drivers' connections reporting through the API


IDLE_SECONDS = 3.0  # how long the idle cluster's own CPU use (cron, gossip) is sampled


async def redis_cpu(cluster: RedisCluster) -> float:
    """CPU seconds used so far by every node of the cluster (primaries and replicas)."""
    infos = await cluster.info("cpu", target_nodes=RedisCluster.ALL_NODES)
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos.values())


class RedisMeter:
    """Redis CPU over a window, less what the idle cluster uses in as long."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.idle_per_s = 0.0

    async def calibrate(self) -> None:
        start, t0 = await redis_cpu(self.cluster), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)  # measuring idleness: nothing to wait for
        self.idle_per_s = (await redis_cpu(self.cluster) - start) / (time.monotonic() - t0)

    async def start(self) -> None:
        self._cpu, self._t0 = await redis_cpu(self.cluster), time.monotonic()

    async def stop(self) -> float:
        used = await redis_cpu(self.cluster) - self._cpu
        return max(0.0, used - self.idle_per_s * (time.monotonic() - self._t0))


class Counter:
    """Messages the listener got; `reached` is set at the expected count."""

    def __init__(self) -> None:
        self.n = 0
        self.expected = 0
        self.reached = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.n, self.expected = 0, expected
        self.reached.clear()

    def add(self) -> None:
        self.n += 1
        if self.n >= self.expected:
            self.reached.set()


class Run:
    def __init__(self, opts: argparse.Namespace, cluster_url: str, tmp: Path) -> None:
        self.opts = opts
        self.url = cluster_url
        self.tmp = tmp
        admin = os.environ.get("DATABASE_URL") or "postgresql://root@127.0.0.1:5432/test"
        self.db = Database(plain_dsn(admin).replace("postgresql+asyncpg://", "postgresql://"))
        self.prefix = f"cap-{secrets.token_hex(3)}"
        self.secret = secrets.token_urlsafe(48)
        self.cluster = cluster_client(cluster_url)
        self.meter = RedisMeter(self.cluster)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        env.update(
            DATABASE_URL=self.db.sqlalchemy_url,
            REDIS_CLUSTER_URL=self.url,
            JWT_SECRET=self.secret,
            ACCESS_TOKEN_TTL="3600",
            TAXI_ENV="production",
            MEDIA_ROOT=str(self.tmp / "media"),
            CHANNEL_PREFIX=self.prefix,
            PYTHONPATH=str(ROOT),
        )
        return env

    async def fanout(self, processes: int) -> dict[str, Any]:
        servers = [
            Server("taxi", core, self.env(), self.tmp / f"p{processes}-{core}.log")
            for core in range(processes)
        ]
        for server in servers:
            await server.start()
        try:
            return await self._fanout(servers)
        finally:
            for server in servers:
                await server.stop()

    async def _fanout(self, servers: list[Server]) -> dict[str, Any]:
        http = HTTP(servers[0].port)
        cast = await fanout_cast(http)
        n = self.opts.sockets
        rss0 = [rss_kib(s.pid) for s in servers]
        sockets: list[WS] = [None] * n  # type: ignore[list-item]

        async def one(i: int) -> None:
            server = servers[i % len(servers)]
            ws = await connect(server.port, cast.driver.token, i)
            ws.send(gqlws.subscribe("u", SUB_UPDATED, {"id": cast.trip_id}))
            first = await ws.recv_json()
            assert first["type"] == "next", first
            sockets[i] = ws

        await bounded(n, 32, one)
        for server in servers:
            await settle(server.pid)
        rss = [rss_kib(s.pid) - r for s, r in zip(servers, rss0, strict=True)]

        # A real event as the template: listen on the trip's channel, commit a change.
        channel = f"{self.prefix}:trip:{cast.trip_id}"
        await self.cluster.initialize()  # pubsub() needs the slot map
        pubsub = self.cluster.pubsub()
        await pubsub.ssubscribe(channel)
        got: dict[str, int] = {"n": 0}
        done = asyncio.Event()

        def sink(_ws: WS, _now: float, _payload: bytes) -> None:
            got["n"] += 1
            if got["n"] >= n:
                done.set()

        for ws in sockets:
            ws.inbox.clear()
            ws.sink = sink
        status = {"id": cast.trip_id, "s": "IN_PROGRESS"}
        await http.graphql(UPDATE, status, cast.driver.token)
        template = None
        while template is None:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=5)
            template = message["data"] if message else None
        await pubsub.aclose()
        await asyncio.wait_for(done.wait(), EVENT_TIMEOUT)
        event = orjson.loads(template)

        cpu0 = [cpu_seconds(s.pid) for s in servers]
        await self.meter.start()
        gen0, t0 = time.process_time(), time.monotonic()
        for k in range(self.opts.events):
            got["n"] = 0
            done.clear()
            event["at"] = time.time()
            event["trip"]["pick_up_address"] = f"cap #{k}"
            await self.cluster.spublish(channel, orjson.dumps(event))
            await asyncio.wait_for(done.wait(), EVENT_TIMEOUT)
        wall = time.monotonic() - t0
        cpu = [cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True)]
        redis = await self.meter.stop()
        gen = time.process_time() - gen0
        for ws in sockets:
            ws.close()
        await http.close()
        deliveries = n * self.opts.events
        return {
            "processes": len(servers),
            "sockets": n,
            "events": self.opts.events,
            "deliveries_per_s": round(deliveries / wall),
            "server_cpu_us_per_delivery": round(sum(cpu) / deliveries * 1e6, 1),
            "server_cpu_s": [round(c, 2) for c in cpu],
            "loadgen_cpu_s": round(gen, 2),
            "wall_s": round(wall, 2),
            "rss_kib_per_socket": round(sum(rss) / n, 1),
            "redis_cpu_ms_per_10k_deliveries": round(redis / deliveries * 1e4 * 1000, 2),
        }

    async def api_reports(self) -> dict[str, Any]:
        """reportLocation through one server process (core 0): its CPU per report, and
        what today's path (a PostgreSQL transaction + SPUBLISH) costs Redis."""
        server = Server("taxi", 0, self.env(), self.tmp / "reports.log")
        await server.start()
        try:
            setup = HTTP(server.port)
            cast = await fanout_cast(setup)
            await setup.close()
            count = self.opts.api_reports
            clients = [HTTP(server.port) for _ in range(REPORT_CLIENTS)]

            async def driver(c: int) -> None:
                for i in range(c, count, REPORT_CLIENTS):
                    where = {"latitude": 52 + i / 1e6, "longitude": 13.4, "heading": 90.0}
                    variables = {"t": cast.trip_id, "l": where}
                    body = await clients[c].graphql(REPORT, variables, cast.driver.token)
                    assert "errors" not in body, body

            await settle(server.pid)
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            await self.meter.start()
            await asyncio.gather(*(driver(c) for c in range(REPORT_CLIENTS)))
            wall = time.monotonic() - t0
            redis = await self.meter.stop()
            cpu = cpu_seconds(server.pid) - cpu0
            for client in clients:
                await client.close()
        finally:
            await server.stop()
        return {
            "reports": count,
            "reports_per_s": round(count / wall),
            "server_cpu_ms_per_report": round(cpu / count * 1000, 2),
            "redis_cpu_ms_per_1k_reports": round(redis / count * 1e3 * 1000, 1),
        }

    async def redis_alone(self) -> dict[str, Any]:
        """Redis CPU per one-to-one delivery and per position report."""
        channels = [f"{self.prefix}:trip:{i}:location" for i in range(self.opts.channels)]
        listener = ShardedRedisBackend(self.url)
        await listener.connect()
        received = Counter()

        async def drain() -> None:
            while True:
                await listener.next_published()
                received.add()

        task = asyncio.create_task(drain())
        try:
            for channel in channels:
                await listener.subscribe(channel)
            count = self.opts.reports
            publish = await self._measure(count, channels, received, positions=False)
            reports = await self._measure(count, channels, received, positions=True)
        finally:
            task.cancel()
            await listener.disconnect()
        return {
            "messages": count,
            "redis_cpu_ms_per_10k_deliveries": round(publish / count * 1e4 * 1000, 1),
            "redis_cpu_ms_per_1k_position_reports": round(reports / count * 1e3 * 1000, 1),
        }

    async def _measure(
        self, count: int, channels: list[str], received: Counter, *, positions: bool
    ) -> float:
        received.reset(count)
        await self.meter.start()
        batch = 200
        for start in range(0, count, batch):
            async with self.cluster.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + batch, count)):
                    lon, lat = 13.0 + (i % 1000) / 1000, 52.0 + (i % 997) / 1000
                    if positions:
                        cell = f"{self.prefix}:positions:{{cell:{i % 64}}}"
                        pipe.geoadd(cell, (lon, lat, f"driver:{i % 5000}"))
                    pipe.spublish(channels[i % len(channels)], f'{{"lat":{lat}}}')
                await pipe.execute()
        await asyncio.wait_for(received.reached.wait(), EVENT_TIMEOUT)
        return await self.meter.stop()


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    raise_open_files()
    with tempfile.TemporaryDirectory(prefix="taxi-capacity-") as name:
        tmp = Path(name)
        async with private_cluster(tmp / "cluster") as rc:
            run = Run(opts, rc.url, tmp)
            await run.db.create(ROOT)
            try:
                await run.meter.calibrate()
                results: dict[str, Any] = {"fanout": [], "redis_idle_cpu_ms_per_s": 0.0}
                results["redis_idle_cpu_ms_per_s"] = round(run.meter.idle_per_s * 1000, 2)
                if opts.api_reports:
                    results["api_reports"] = await run.api_reports()
                    progress(results["api_reports"])
                for processes in opts.processes:
                    row = await run.fanout(processes)
                    results["fanout"].append(row)
                    progress(row)
                results["redis"] = await run.redis_alone()
                progress(results["redis"])
                return results
            finally:
                await run.cluster.aclose()
                await run.db.drop()


def progress(what: object) -> None:
    sys.stderr.write(f"{what}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--sockets", type=int, default=4000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--channels", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=50000)
    parser.add_argument("--api-reports", type=int, default=3000, help="0: skip")
    parser.add_argument(
        "--processes", type=lambda v: [int(p) for p in v.split(",")], default=[1, 2]
    )
    out = uvloop.run(main(parser.parse_args()))
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
