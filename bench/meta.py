"""A run's surroundings and its output: package and service versions, the host, progress
lines on stderr, and the JSON written under bench/results/."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis import asyncio as aioredis

from bench.prepare import ROOT
from bench.proc import raise_open_files

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = [
    "strawberry-graphql",
    "graphql-core",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "broadcaster",
    "redis",
    "orjson",
    "pydantic",
    "pyjwt",
]


def _host() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": versions,
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "git": git,
        "open_files": raise_open_files(),
    }


async def environment(admin_dsn: str, redis_url: str) -> dict[str, Any]:
    """Python, packages, cores, CPU, kernel, the services' versions, the git state."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        pg = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        redis_version = (await redis.info("server"))["redis_version"]
    finally:
        await redis.aclose()
    return {**_host(), "postgresql": pg, "redis": redis_version}


def progress(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def save_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def save(results: dict[str, Any], name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{save_stamp()}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return path
