"""The main run (`python -m bench`'s phases http, fanout and race): the throw-away
database, the servers under test and the load generator processes, each measurement next to
its baseline in the same run (the order is in bench/__main__.py's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.gclog import annotate_gc
from bench.meta import environment, progress
from bench.net import HTTP
from bench.prepare import (
    ROOT,
    Database,
    FanoutCast,
    Server,
    account,
    channels,
    fanout_cast,
    own_environment,
    plain_dsn,
    seed_http,
    seed_race,
)

# Events per second into the sustained-delivery subscribers (1,000 of them).
SUSTAINED_RATES = [1, 1.5, 2, 3, 5, 10, 20, 35, 50, 75, 100]


class Run:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.steps = [int(s) for s in opts.steps.split(",")]
        self.admin_dsn = plain_dsn(
            os.environ.get("BENCH_ADMIN_DATABASE_URL")
            or os.environ.get("DATABASE_URL")
            or "postgresql://root@127.0.0.1:5432/test"
        )
        self.redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        self.db = Database(self.admin_dsn)
        self.secret = secrets.token_urlsafe(48)
        self.prefix = f"bench-{os.getpid()}-{secrets.token_hex(3)}"
        self.tmp = Path(tempfile.mkdtemp(prefix="taxi-bench-"))
        self.servers: list[Server] = []
        self.results: dict[str, Any] = {"http": {}, "fanout": {}}
        self.source = self._source(opts.ref)

    def _source(self, ref: str | None) -> Path:
        """Where the servers import taxi from: the working tree, or an export of `ref`
        (with this bench/ beside it) so a run can measure committed code."""
        if not ref:
            return ROOT
        src = self.tmp / "src"
        src.mkdir()
        archive = subprocess.run(
            ["git", "archive", ref, "taxi"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        shutil.copytree(
            ROOT / "bench", src / "bench", ignore=shutil.ignore_patterns("results", "__pycache__")
        )
        return src

    def source_label(self) -> str:
        if self.opts.ref is None:
            return "working tree"
        sha = subprocess.run(
            ["git", "rev-parse", "--short", self.opts.ref], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return f"git archive {self.opts.ref} ({sha})"

    def server_env(self, *, redis: bool = True) -> dict[str, str]:
        env = own_environment()
        env.update(
            {
                "DATABASE_URL": self.db.sqlalchemy_url,
                "JWT_SECRET": self.secret,
                "ACCESS_TOKEN_TTL": "3600",
                "TAXI_ENV": "production",
                "MEDIA_ROOT": str(self.tmp / "media"),
                "BENCH_CHANNEL_PREFIX": self.prefix,
                "CHANNEL_PREFIX": self.prefix,
                "SIGNUP_MAX_PER_HOUR": "100000000",
                "LOGIN_MAX_PER_ADDRESS": "100000000",
                "TRIP_REQUESTS_PER_10_MIN": "100000000",
                # The fan-out opens up to 10,000 sockets from a few accounts' tokens (one
                # connection_init each, as many phones would): lift the per-user cap.
                "MAX_SOCKETS_PER_USER": "1000000",
                "PYTHONPATH": str(self.source),
            }
        )
        if redis:
            env["REDIS_URL"] = self.redis_url
        return env

    async def server(self, kind: str, core: int = 0, *, redis: bool = True) -> Server:
        name = f"{kind}-{len(self.servers)}"
        env = self.server_env(redis=redis)
        server = Server(kind, core, env, self.tmp / f"{name}.log", source=self.source)
        self.servers.append(server)
        await server.start()
        return server

    async def loadgen(self, name: str, cfg: dict[str, Any]) -> dict[str, Any]:
        config, out, log = (self.tmp / f"{name}{ext}" for ext in (".json", ".out.json", ".log"))
        config.write_bytes(orjson.dumps(cfg))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *("taskset", "-c", "1", sys.executable, "-m", "bench.loadgen"),
            *(str(config), str(out), str(log)),
            cwd=ROOT,
        )
        code = await proc.wait()
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"loadgen {name} failed ({code}):\n{tail}")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        result["wall_s"] = round(time.monotonic() - started, 1)
        progress(f"{name}: {result['wall_s']} s")
        return result

    def fanout_cfg(self, server: Server, cast: FanoutCast, *, sustained: bool = True) -> Any:
        trip_channel, pool_channel = channels(self.source, self.prefix, cast.trip_id)
        return {
            "scenario": "fanout",
            "kind": server.kind,
            "port": server.port,
            "pid": server.pid,
            "redis_url": self.redis_url,
            "trip_id": cast.trip_id,
            "trip_channel": trip_channel,
            "pool_channel": pool_channel,
            "driver_token": cast.driver.token,
            "rider_token": cast.rider.token,
            "requester_token": cast.requester.token,
            "steps": self.steps,
            "sustained": {
                "n": min(1000, self.steps[0]),
                "rates": SUSTAINED_RATES if sustained else [],
                "seconds": self.opts.sustained_seconds,
            },
        }

    def http_cfg(self, server: Server, path: str, method: str, token: str) -> Any:
        return {
            "scenario": "http",
            "port": server.port,
            "pid": server.pid,
            "method": method,
            "path": path,
            "token": token,
            "concurrency": 50,
            "warmup_s": 2.0,
            "seconds": self.opts.http_seconds,
        }

    async def main(self) -> dict[str, Any]:
        self.results["meta"] = await environment(self.admin_dsn, self.redis_url)
        self.results["meta"]["taxi_source"] = self.source_label()
        progress(f"database {self.db.name}, taxi from {self.source_label()}, logs in {self.tmp}")
        try:
            await self.db.create(self.source)
            await self._measure()
        finally:
            for server in self.servers:
                await server.stop()
            await self.db.drop()
        return self.results

    async def _http_and_fanout(
        self,
        phases: set[str],
        server: Server,
        http_name: str,
        fanout_name: str,
        http_cfg: Any,
        casts: dict[str, FanoutCast],
    ) -> None:
        """One server's HTTP run and fan-out run (each if asked for), then the server
        stopped and the fan-out's events annotated with its collections."""
        if "http" in phases:
            self.results["http"][http_name] = await self.loadgen(f"http-{http_name}", http_cfg)
        if "fanout" in phases:
            self.results["fanout"][fanout_name] = await self.loadgen(
                f"fanout-{fanout_name}", self.fanout_cfg(server, casts[fanout_name])
            )
        await server.stop()
        if "fanout" in phases:
            annotate_gc(self.results["fanout"][fanout_name]["events"], server.log)

    async def _measure(self) -> None:
        opts = self.opts
        phases = set(opts.only.split(","))
        taxi = await self.server("taxi")
        http = HTTP(taxi.port)
        kinds = ["taxi", "ceiling"] + (["memory"] if opts.memory_row else [])
        kinds += ["frozen"] if opts.gc_freeze_row else []
        casts = {kind: await fanout_cast(http) for kind in kinds} if "fanout" in phases else {}
        rider = await account(http, "RIDER")
        await http.close()
        await seed_http(self.db.dsn, rider.id)
        race_tokens, race_trips = await seed_race(self.db.dsn, self.secret, 100)
        progress("accounts and rows ready")

        taxi_http = self.http_cfg(taxi, "/graphql", "POST", rider.token)
        await self._http_and_fanout(phases, taxi, "taxi", "taxi", taxi_http, casts)
        if phases & {"http", "fanout"}:
            ceiling = await self.server("ceiling")
            bare_http = self.http_cfg(ceiling, "/bare/trips?first=20", "GET", rider.token)
            await self._http_and_fanout(phases, ceiling, "bare", "ceiling", bare_http, casts)
            if "http" in phases:
                self.results["http"]["same_rows"] = same_rows(self.results["http"])

        if opts.memory_row and "fanout" in phases:
            mem = await self.server("taxi", redis=False)
            self.results["fanout"]["memory"] = await self.loadgen(
                "fanout-memory", self.fanout_cfg(mem, casts["memory"], sustained=False)
            )
            await mem.stop()
            annotate_gc(self.results["fanout"]["memory"]["events"], mem.log)

        if opts.gc_freeze_row and "fanout" in phases:
            frozen = await self.server("taxi")
            cfg = {**self.fanout_cfg(frozen, casts["frozen"]), "gc_freeze": True}
            self.results["fanout"]["frozen"] = await self.loadgen("fanout-frozen", cfg)
            await frozen.stop()
            annotate_gc(self.results["fanout"]["frozen"]["events"], frozen.log)

        if "race" in phases:
            a, b = await self.server("taxi", 0), await self.server("taxi", 1)
            self.results["race"] = await self.loadgen(
                "race",
                {
                    "scenario": "race",
                    "ports": [a.port, b.port],
                    "driver_tokens": race_tokens,
                    "trip_ids": race_trips,
                },
            )
            await a.stop()
            await b.stop()


def same_rows(http: dict[str, Any]) -> str:
    """Do both endpoints answer with the same data? (floats compared to 1e-9)"""
    answers = [http[k].pop("sample", None) for k in ("taxi", "bare")]
    if any(a is None or "data" not in a for a in answers):
        return f"no: {answers}"

    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, float):
            return round(value, 9)
        return value

    ours, bare = (norm(a["data"]) for a in answers)
    if ours == bare:
        edges = ours["trips"]["edges"]
        return f"yes ({len(edges)} trips, totalCount {ours['trips']['totalCount']})"
    return "NO: the answers differ"
