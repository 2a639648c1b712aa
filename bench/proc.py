"""What /proc says about a process: resident memory and CPU time."""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process so far (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def settle(
    pid: int, *, idle: float = 0.04, window: float = 0.25, limit: float = 120
) -> float:
    """Wait until the process uses less than `idle` of a core over `window` seconds;
    returns how long that took (pending work such as subscriptions is done then)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    before = cpu_seconds(pid)
    while loop.time() - start < limit:
        await asyncio.sleep(window)
        now = cpu_seconds(pid)
        if now - before <= idle * window:
            break
        before = now
    return loop.time() - start


def as_generator(prefix: str) -> Path:
    """This process as the load generator: on core 1 (the server has core 0), with as
    many open files as it may have; returns a new folder for the servers' logs."""
    raise_open_files()
    os.sched_setaffinity(0, {1})
    return Path(tempfile.mkdtemp(prefix=prefix))


def raise_open_files() -> int:
    """Soft limit up to the hard one (root without CAP_SYS_RESOURCE cannot go beyond)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
