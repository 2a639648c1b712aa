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
        self.marks: dict[str, list[float]] = {}
        self.cpu_at_start = cpu_seconds(pid)
        self.gc_before: dict[str, Any] = {}

    async def _sample(self) -> None:
        while True:
            with suppress(OSError, RuntimeError):  # the server is gone
                self.rss.append((round(time.monotonic() - self.t0, 1), rss_kib(self.pid) / 1024))
            await asyncio.sleep(RSS_EVERY)

    def mark(self, name: str) -> None:
        """The run's timeline (setup steps, window): seconds since the start, and the
        server's CPU seconds by then (was the setup waiting for the server?)."""
        cpu = cpu_seconds(self.pid) - self.cpu_at_start
        self.marks[name] = [round(time.monotonic() - self.t0, 1), round(cpu, 1)]

    async def _gc(self, query: str = "") -> dict[str, Any]:
        if not self.heap:
            return {}
        http = HTTP(self.port)
        try:
            _, body = await http.request("GET", "/__bench/gc" + query)
        finally:
            await http.close()
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    async def begin(self) -> None:
        self.gc_before = await self._gc()
        self.mark("measured from")
        self.window = (time.time(), 0.0)
        self.cpu, self.own_cpu = cpu_seconds(self.pid), time.process_time()
        self.wall = time.monotonic()

    async def end(self) -> dict[str, Any]:
        self.mark("measured to")
        wall = time.monotonic() - self.wall
        self.window = (self.window[0], time.time())
        own = time.process_time() - self.own_cpu
        cpu = cpu_seconds(self.pid) - self.cpu
        out: dict[str, Any] = {
            "server_cpu_seconds": cpu,
            "generator_cpu_pct": round(100 * own / wall, 1),
            "seconds": round(wall, 1),
        }
        if self.heap:
            after, before = await self._gc(), self.gc_before
            gc_cpu = [
                a - b for a, b in zip(after["cpu_seconds"], before["cpu_seconds"], strict=True)
            ]
            out["gc_in_window"] = {
                "collections": [
                    a - b for a, b in zip(after["collections"], before["collections"], strict=True)
                ],
                "cpu_seconds": [round(c, 2) for c in gc_cpu],
                "share_of_server_cpu_pct": round(100 * sum(gc_cpu) / max(cpu, 1e-9), 1),
            }
        return out

    async def finish(self) -> dict[str, Any]:
        """RSS, collections and heap; call while the server still runs."""
        self.sampler.cancel()
        mib = [m for t, m in self.rss if self.marks["measured from"][0] <= t]
        rss = {
            "measured_start": mib[0] if mib else None,
            "measured_end": mib[-1] if mib else None,
            "max": max((m for _, m in self.rss), default=None),
            "every_5s": [(t, round(m)) for t, m in self.rss],
        }
        if not self.heap:
            return {"rss_mib": rss, "timeline_s": self.marks}
        heap = await self._gc("?objects=1")
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
