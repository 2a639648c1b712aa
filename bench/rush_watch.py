"""What a rush-hour run watches besides latency: the server's CPU over the measured
window, its resident memory over the whole run, its garbage collections (bench.gclog's
lines) and heap, and the generator's own CPU (it must not be the bottleneck)."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from bench.gclog import gc_lines
from bench.net import HTTP
from bench.proc import cpu_seconds, rss_kib

RSS_EVERY = 5.0  # seconds between two samples of the server's resident memory


class Watch:
    def __init__(self, pid: int, port: int, log: Path, *, heap: bool = True) -> None:
        """`heap`: the server is bench.server's (GET /__bench/gc, `bench-gc` lines)."""
        self.pid, self.port, self.log, self.heap = pid, port, log, heap
        self.t0 = self.wall = time.monotonic()
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.sampler = asyncio.create_task(self._sample())
        self.window: tuple[float, float] = (time.time(), time.time())
        self.cpu = self.own_cpu = 0.0
        self.marks: dict[str, float] = {}

    async def _sample(self) -> None:
        while True:
            with suppress(OSError, RuntimeError):  # the server is gone
                self.rss.append((round(time.monotonic() - self.t0, 1), rss_kib(self.pid) / 1024))
            await asyncio.sleep(RSS_EVERY)

    def mark(self, name: str) -> None:
        """Seconds since the start, for the run's timeline (setup steps, window)."""
        self.marks[name] = round(time.monotonic() - self.t0, 1)

    def begin(self) -> None:
        self.mark("measured from")
        self.window = (time.time(), 0.0)
        self.cpu, self.own_cpu = cpu_seconds(self.pid), time.process_time()
        self.wall = time.monotonic()

    def end(self) -> dict[str, Any]:
        self.mark("measured to")
        wall = time.monotonic() - self.wall
        self.window = (self.window[0], time.time())
        own = time.process_time() - self.own_cpu
        return {
            "server_cpu_seconds": cpu_seconds(self.pid) - self.cpu,
            "generator_cpu_pct": round(100 * own / wall, 1),
            "seconds": round(wall, 1),
        }

    async def finish(self) -> dict[str, Any]:
        """RSS, collections and heap; call while the server still runs."""
        self.sampler.cancel()
        mib = [m for t, m in self.rss if self.marks["measured from"] <= t]
        rss = {
            "measured_start": mib[0] if mib else None,
            "measured_end": mib[-1] if mib else None,
            "max": max((m for _, m in self.rss), default=None),
            "every_5s": [(t, round(m)) for t, m in self.rss],
        }
        if not self.heap:
            return {"rss_mib": rss, "timeline_s": self.marks}
        http = HTTP(self.port)
        try:
            _, body = await http.request("GET", "/__bench/gc?objects=1")
        finally:
            await http.close()
        heap = orjson.loads(body)
        start, end = self.window
        pauses = gc_lines(self.log)
        inside = [p for p in pauses if start <= p[1] <= end]
        return {
            "rss_mib": rss,
            "gc": {
                # [pause ms, CPU ms] of each full collection
                "gen2_in_window": [_ms(p) for p in inside if p[2] == 2],
                "young_over_20ms_in_window": [_ms(p) for p in inside if p[2] != 2],
                "gen2_whole_run": [_ms(p) for p in pauses if p[2] == 2],
                "collections": heap["collections"],
                "seconds": heap["seconds"],
                "objects_at_end": heap.get("objects"),
                "frozen_at_end": heap["frozen"],
                "threshold": heap["threshold"],
            },
            "timeline_s": self.marks,
        }


def _ms(pause: tuple[float, float, int, float | None]) -> list[float | None]:
    start, end, _, cpu = pause
    return [round((end - start) * 1000, 1), None if cpu is None else round(cpu * 1000, 1)]
