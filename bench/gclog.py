"""The server's garbage collections: `watch()` (in the server under test) counts them and
writes a `bench-gc gen=G ms=T cpu_ms=T collected=C at=T` line to stderr for each full
(gen-2) or slow (> 20 ms) one (`ms` the pause, `cpu_ms` the CPU it took: on a shared
core the pause is longer); `gc_pauses(log)` reads the lines back for the orchestrator, which
matches them to its measurement windows. py-spy cannot name the collector: it charges
its time to whichever Python line allocated when it ran."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

from taxi.core import gcpolicy

SLOW = 0.02  # seconds: a young collection this long is logged too
COUNTS = [0, 0, 0]  # collections per generation, since the server started
SECONDS = [0.0, 0.0, 0.0]  # their pauses
CPU = [0.0, 0.0, 0.0]  # the CPU they took


def watch() -> None:
    started = [0.0, 0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = time.perf_counter(), time.thread_time()
            return
        took = time.perf_counter() - started[0]
        cpu = time.thread_time() - started[1]
        gen = info["generation"]
        COUNTS[gen] += 1
        SECONDS[gen] += took
        CPU[gen] += cpu
        if gen == 2 or took > SLOW:
            sys.stderr.write(
                f"bench-gc gen={gen} ms={took * 1000:.1f} cpu_ms={cpu * 1000:.1f} "
                f"collected={info['collected']} blocks={sys.getallocatedblocks()} "
                f"sockets={gcpolicy.sockets()} walks={gcpolicy.walks()} "
                f"at={time.time():.3f}\n"
            )

    gc.callbacks.append(callback)


def gc_pauses(log: Path) -> list[tuple[float, float, int]]:
    """(start, end, generation) of the collections the server logged."""
    return [(start, end, gen) for start, end, gen, _ in gc_lines(log)]


def gc_lines(log: Path) -> list[tuple[float, float, int, float | None]]:
    """(start, end, generation, CPU seconds or None) of the collections logged."""
    pauses = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("bench-gc "):
            f = dict(part.split("=", 1) for part in line.split()[1:])
            end = float(f["at"])
            cpu = float(f["cpu_ms"]) / 1000 if "cpu_ms" in f else None
            pauses.append((end - float(f["ms"]) / 1000, end, int(f["gen"]), cpu))
    return pauses


def annotate_gc(events: list[dict[str, Any]], log: Path) -> None:
    """Adds to each event the collector's pauses (ms) inside its measurement window."""
    pauses = gc_pauses(log)
    for e in events:
        inside = [(b - a) * 1000 for a, b, _ in pauses if a < e["t_end"] and b > e["t0"]]
        e["gc_pause_ms"] = round(sum(inside), 1)
        e["gc_max_ms"] = round(max(inside, default=0.0), 1)
