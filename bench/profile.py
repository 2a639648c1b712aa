"""`python -m bench profile`: where the server's time goes during fan-out.

One server process (core 0) with N authenticated sockets (default 5,000), each
subscribed to `tripUpdated` of one trip and to `tripRequested`. After one real change
of each kind (their Redis messages become templates), py-spy records the server (from
the load generator's core) while synthetic copies of those events are published one at
a time, alternating, each waited for until every socket has it. The raw collapsed
stacks are kept under bench/results/ (load them in speedscope or flamegraph.pl); the
summary groups samples by the innermost frame's package and by function."""

from __future__ import annotations

import asyncio
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.gclog import annotate_gc
from bench.meta import RESULTS, environment, progress, save_stamp
from bench.net import HTTP
from bench.prepare import fanout_cast

if TYPE_CHECKING:
    from bench.run import Run

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _package(path: str) -> str:
    """py-spy names files relative to their sys.path entry: `graphql/execution/...`."""
    if path.startswith("<"):
        return "<generated code>" if path == "<string>" else path
    first = path.split("/", 1)[0].removesuffix(".py")
    if first in sys.stdlib_module_names:
        return first if first == "asyncio" else f"stdlib ({first})"
    return first


def _short(frame: str) -> str:
    m = FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    stacks: list[tuple[list[str], int]] = []
    other_threads = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            frames = stack.split(";")  # outermost first
            if any(f.startswith("Thread._bootstrap") for f in frames):
                # Thread-pool workers waiting for work: py-spy cannot tell they are
                # idle. The event loop runs on the main thread; only it is counted.
                other_threads += int(samples)
                continue
            stacks.append((frames, int(samples)))
    total = sum(c for _, c in stacks) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    on_stack: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        leaf = frames[-1]
        m = FRAME.match(leaf)
        self_time[_short(leaf)] += count
        by_package[_package(m["file"] if m else leaf)] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
        packages: set[str] = set()
        for f in frames:
            fm = FRAME.match(f)
            packages.add(_package(fm["file"]) if fm else f)
        for p in packages:
            on_stack[p] += count

    def pct(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "other_thread_samples": other_threads,
        "by_package": pct(by_package, 15),
        "on_stack": pct(on_stack, 15),
        "self": pct(self_time, top),
        "total": pct(inclusive, top),
    }


async def spy_on(pid: int, output: Path | None, seconds: float) -> Any:
    """py-spy recording `pid` for `seconds` into `output` (raw stacks); None: no profile."""
    if output is None:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    spy = await asyncio.create_subprocess_exec(
        *(str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"),
        *("--duration", str(int(seconds)), "--output", str(output)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1)  # attached
    return spy


async def spied(spy: Any, output: Path | None) -> dict[str, Any] | None:
    """The summary of `spy_on`'s recording, once it ended."""
    if spy is None or output is None:
        return None
    await spy.wait()
    return summarize(output, top=30)


async def profile(run: Run) -> dict[str, Any]:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy (it is in the dev extra)")
    RESULTS.mkdir(exist_ok=True)
    raw = RESULTS / f"profile-{save_stamp()}.txt"
    opts = run.opts
    meta: dict[str, Any] = {}
    try:
        meta = await environment(run.admin_dsn, run.redis_url)
        meta["taxi_source"] = run.source_label()
        await run.db.create(run.source)
        server = await run.server("taxi")
        http = HTTP(server.port)
        cast = await fanout_cast(http)
        await http.close()
        progress(f"profiling N={opts.profile_n:,}")
        out = await run.loadgen(
            "profile",
            {
                # The fan-out's cast and channels; the profile scenario instead of its steps.
                **run.fanout_cfg(server, cast, sustained=False),
                "scenario": "profile",
                "profile": {
                    "n": opts.profile_n,
                    "events": opts.profile_events,
                    "rate": 200,
                    "py_spy": str(py_spy),
                    "output": str(raw),
                    "native": opts.native,
                },
            },
        )
    finally:
        for s in run.servers:
            await s.stop()
        await run.db.drop()
    annotate_gc(out["events"], run.servers[0].log)
    summary = summarize(raw)
    return {
        "meta": meta,
        "n": out["n"],
        "events": out["count"],
        "rate": 200,
        "server_cpu_s": out["server_cpu_s"],
        "wall_s": out["wall_s"],
        "fanout_events": out["events"],
        "raw": str(raw.relative_to(RESULTS.parent.parent)),
        **summary,
    }
