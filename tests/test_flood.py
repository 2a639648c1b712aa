"""Issue 19's flood check: 20 s of unauthenticated requests from one address (APQ junk
with its real hash, log-ins with random usernames, admin log-ins) against a real `taxi
serve` process with real argon2id and the default limits, on a Redis of its own. Redis
must stay within 1 MiB of where it started and `/healthz` under 100 ms; the figures are
printed (run with `-s` to see them)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
from pathlib import Path

import httpx
from redis import asyncio as aioredis

from tests.backends import Backend
from tests.helpers import LOG_IN, unique
from tests.procs import redis_server, taxi_servers

FLOOD_SECONDS = 20.0
WORKERS = 6  # concurrent flooding clients, all from 127.0.0.1
JUNK_BYTES = 60 * 1024
MIB = 1024 * 1024
HEALTH_EVERY = 0.1


async def _used_memory(redis: aioredis.Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def _flood(http: httpx.AsyncClient, until: float, counts: dict[str, int]) -> None:
    kinds = ("apq", "login", "admin")
    n = 0
    while time.monotonic() < until:
        kind = kinds[n % len(kinds)]
        n += 1
        if kind == "apq":
            junk = os.urandom(JUNK_BYTES // 2).hex()
            digest = hashlib.sha256(junk.encode()).hexdigest()
            extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
            response = await http.post("/graphql", json={"query": junk, "extensions": extensions})
        elif kind == "login":
            variables = {"username": unique("flood"), "password": "wrong-password-1"}
            response = await http.post("/graphql", json={"query": LOG_IN, "variables": variables})
        else:
            form = {"username": unique("flood"), "password": "wrong-password-1"}
            response = await http.post("/admin/login", data=form)
        assert response.status_code < 500, response.text
        counts[kind] += 1


async def test_a_flood_of_unauthenticated_requests_leaves_redis_and_healthz_alone(
    real_backend: Backend, tmp_path: Path
) -> None:
    async with (
        redis_server(tmp_path) as private,
        taxi_servers(
            ["flooded"],
            database_url=real_backend.database_url,
            redis_url=private.url,
            log_dir=tmp_path,
            # The deployment's defaults: real argon2id, the log-in limits of PROTOCOL.md.
            extra_env={"PASSWORD_HASHING": "default", "LOGIN_MAX_PER_ADDRESS": "30"},
        ) as (server,),
        aioredis.Redis.from_url(private.url) as redis,
    ):
        start = await _used_memory(redis)
        peak = start
        latencies: list[float] = []
        counts = {"apq": 0, "login": 0, "admin": 0}
        until = time.monotonic() + FLOOD_SECONDS
        flood = [asyncio.create_task(_flood(server.http, until, counts)) for _ in range(WORKERS)]
        async with httpx.AsyncClient(base_url=server.url) as probe:
            while time.monotonic() < until:
                began = time.perf_counter()
                assert (await probe.get("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - began)
                peak = max(peak, await _used_memory(redis))
                await asyncio.sleep(HEALTH_EVERY)  # the probe's interval, not a wait
        await asyncio.gather(*flood)
        end = await _used_memory(redis)
    peak = max(peak, end)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\nflood {FLOOD_SECONDS:.0f} s x {WORKERS} clients: {counts}; "
        f"redis used_memory {start / MIB:.2f} -> {end / MIB:.2f} MiB (peak {peak / MIB:.2f}); "
        f"/healthz median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms ({len(latencies)} probes)"
    )
    assert sum(counts.values()) > 100  # it was a flood
    assert peak - start < MIB
    assert latencies[-1] < 0.1
