"""Rush hour (issues 11, 21): `python -m bench.rush [--drivers D --trips T --rate R --seconds S]`,
also the last phase of `python -m bench`; `--sweep 2500,5000,7500,10000` finds the
largest D that meets the goals (shorter windows, no bare run: one row per D), then runs
that D in full with the overload phase (twice its load).

A 20 x 20 km city. One server process on core 0 (PostgreSQL + Redis, production
settings), this generator on core 1. D online drivers each send `updatePosition` every
4 s over their own graphql-transport-ws socket and listen to `tripRequested`; T trips
under way, each driver reporting every 2 s and each rider subscribed to
`driverLocation`; R requests a second with pick-ups spread over the city, each accepted
by the first offered driver after 1-3 s and driven to completion. Measured: the
updatePosition round trip, position -> rider frame, request -> first-wave offer frames
(p50/p99 per 30 s window, to show whether latency stays flat), server CPU per position
report, the server's resident memory and garbage collections, the generator's CPU;
then the same sockets against a bare endpoint doing only GEOADD + PUBLISH per message
(`bench.rush_bare`), for the ratio. The loads (bench.rush_load, bench.rush_bare_load)
run on one scheduler loop (bench.rush_wheel); the setup is bench.rush_setup's (bounded
concurrency, progress on stderr); what is watched on the server, bench.rush_watch's."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import rush_report
from bench.net import HTTP
from bench.prepare import ROOT, Database, Server, plain_dsn, taxi_environment
from bench.proc import as_generator, cpu_seconds
from bench.profile import spied, spy_on
from bench.rush_bare_load import Bare
from bench.rush_load import Rush
from bench.rush_setup import open_bare, say, seed, set_up
from bench.rush_watch import Watch
from bench.rush_wheel import Stats, pct

BARE_SECONDS = 60.0  # the bare endpoint's measured window (at most --seconds)
SWEEP_SECONDS = 60.0


def quiet_collector() -> None:
    """The generator's own full collections would walk its 10,000 sockets' objects (a
    second's pause, seen as a late tick): what the setup made is frozen, never walked."""
    gc.collect()
    gc.freeze()


async def run_taxi(opts: argparse.Namespace, server: Server, tokens: Any) -> dict[str, Any]:
    stats = Stats()
    rush = Rush(stats, opts.rate)
    watch = Watch(server.pid, server.port, server.log)
    socks, requesters = await set_up(rush, server.port, tokens, stats, watch)
    quiet_collector()
    # Reports start once every socket is set up: the setup's own pace then does not
    # depend on how far the server keeps up with a growing load. The warm-up carries the
    # whole load, requests too: the lifecycle's first requests pay its one-time costs
    # (statements compiled, documents prepared: a ~0.4 s stall for every report when
    # they came with the window's first second), and the window measures the steady state.
    turning = asyncio.create_task(rush.run())
    rush.start_requests(requesters)
    await asyncio.sleep(opts.warmup)
    requested_before = rush.requested
    spy = await spy_on(server.pid, opts.profile, opts.seconds)
    say(f"measuring {opts.seconds:.0f} s")
    await watch.begin()
    stats.start()
    await asyncio.sleep(opts.seconds)
    window = await watch.end()
    stats.measuring = False
    requested = rush.requested - requested_before
    profile = await spied(spy, opts.profile)
    overload = await run_overload(opts, rush, watch) if opts.overload_seconds > 0 else None
    rush.stop.set()
    await turning
    observed = await watch.finish()
    for sock in socks:
        sock.close()
    return {
        **({"overload": overload} if overload else {}),
        **stats.summary(),
        "position_reports": stats.reports,
        "position_reports_sent": stats.sent,
        "requests": requested,
        **window,
        "cpu_us_per_report": window["server_cpu_seconds"] / max(stats.reports, 1) * 1e6,
        **observed,
        "errors": dict(stats.errors),
        "errors_outside_window": dict(stats.errors_outside),
        "per_second": {name: stats.per_second(name) for name in sorted(stats.seconds)},
        **({"profile": profile} if profile else {}),
    }


async def run_overload(opts: argparse.Namespace, rush: Rush, watch: Watch) -> dict[str, Any]:
    """Twice the load for --overload-seconds from the same sockets (every car reports
    twice as often, requests come twice as fast), then back to the steady load: what
    was accepted and how fast, what was shed and how fast, memory, and how long until
    reports are answered within the steady p99 (or the 50 ms goal) again."""
    steady_p99 = rush.stats.summary().get("updatePosition_rtt", {}).get("p99_ms") or 50.0
    stats = rush.stats = Stats()
    say(f"overload: twice the load for {opts.overload_seconds:.0f} s")
    started, cpu = time.monotonic() - watch.t0, cpu_seconds(watch.pid)
    rush.wheel.doubled = True
    rush.pace(2 * opts.rate)
    stats.start()
    await asyncio.sleep(opts.overload_seconds)
    stats.measuring = False
    cpu = cpu_seconds(watch.pid) - cpu
    ended = time.monotonic() - watch.t0
    rush.wheel.doubled = False
    rush.pace(opts.rate)
    rush.recovery, rush.dropped_at = [], time.monotonic()
    say(f"overload: back to the steady load, watching {opts.recovery_seconds:.0f} s")
    await asyncio.sleep(opts.recovery_seconds)
    bound = max(steady_p99, 50.0) / 1000
    late = [at for at, rtt in rush.recovery if rtt > bound]
    seconds = recovery_seconds(rush.recovery, opts.recovery_seconds)
    rss = [mib for t, mib in watch.rss if started <= t <= ended]
    return {
        **stats.summary(),
        "seconds": opts.overload_seconds,
        "position_reports": stats.reports,
        "position_reports_sent": stats.sent,
        "cpu_us_per_report": cpu / max(stats.reports, 1) * 1e6,
        "errors": dict(stats.errors),
        "rss_max_mib": max(rss, default=None),
        "recovered_within_ms": bound * 1000,
        # "Back to the steady figures": seconds after the drop from which each second's
        # reports (by when they were sent) have a p99 within bound, the steady window's
        # p99 (None: not before the watch ended). The steady p99 is a p99: one report in
        # a hundred is over it in the steady window too, so "every later report within
        # it" (below) also fails where the load is back to normal.
        "recovered_after_s": _back(seconds, bound * 1000),
        "recovery_p99_ms_per_second": seconds,
        # The stricter reading: until every report sent later came back within bound.
        "every_report_within_after_s": (
            round(max(late, default=0.0), 1)
            if rush.recovery and (not late or max(late) < opts.recovery_seconds - 2)
            else None
        ),
    }


def recovery_seconds(samples: list[tuple[float, float]], watched: float) -> list[float | None]:
    """p99 (ms) of the reports sent in each whole second of the watch, by send time."""
    by_second: list[list[float]] = [[] for _ in range(int(watched))]
    for at, rtt in samples:
        if 0 <= at < len(by_second):
            by_second[int(at)].append(rtt)
    return [pct(values, 0.99) for values in by_second]


def _back(seconds: list[float | None], bound_ms: float) -> float | None:
    """The first second from which every later second (with reports) is within bound;
    None when the last such second is not (the load was not back while watched)."""
    seen = [(s, p99) for s, p99 in enumerate(seconds) if p99 is not None]
    if not seen or seen[-1][1] > bound_ms:
        return None
    back = 0
    for s, p99 in seen:
        if p99 > bound_ms:
            back = s + 1
    return float(back)


async def run_bare(opts: argparse.Namespace, server: Server) -> dict[str, Any]:
    """The same socket count and message rates against bench.rush_bare."""
    stats = Stats()
    bare = Bare(stats)
    watch = Watch(server.pid, server.port, server.log, heap=False)
    sockets = await open_bare(bare, server.port, opts.drivers, opts.trips)
    quiet_collector()
    turning = asyncio.create_task(bare.run())
    await asyncio.sleep(opts.warmup)
    await watch.begin()
    stats.start()
    await asyncio.sleep(min(opts.seconds, BARE_SECONDS))
    window = await watch.end()
    stats.measuring = False
    bare.stop.set()
    await turning
    observed = await watch.finish()
    for ws in sockets:
        ws.close()
    cpu = window["server_cpu_seconds"]
    return {
        **stats.summary(),
        "messages": stats.reports,
        "messages_sent": stats.sent,
        **window,
        "cpu_us_per_message": cpu / max(stats.reports, 1) * 1e6,
        **observed,
    }


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    tmp = as_generator("taxi-rush-")
    say(f"D={opts.drivers:,} T={opts.trips:,} R={opts.rate}/s, {opts.seconds:.0f} s; logs in {tmp}")
    db = Database(plain_dsn(opts.database_url))
    await db.create(ROOT)
    secret, prefix = secrets.token_urlsafe(40), f"rush-{secrets.token_hex(4)}"
    env = taxi_environment(
        db,
        redis_url=opts.redis_url,
        secret=secret,
        prefix=prefix,
        media=tmp / "media",
        BENCH_CHANNEL_PREFIX=prefix,
        MAX_SOCKETS_PER_USER="1000",
        # taxi.core.gcpolicy, on under `taxi serve`; `--gc default`: CPython's, for comparison
        GC_TUNING="1" if opts.gc == "tuned" else "0",
        # The admission threshold: the contract's default unless asked (an operator's
        # setting, to see what it changes under overload).
        **(
            {"OVERLOAD_QUEUE_SECONDS": str(opts.overload_queue_seconds)}
            if opts.overload_queue_seconds is not None
            else {}
        ),
    )
    results: dict[str, Any] = {"options": {k: str(v) for k, v in vars(opts).items()}}
    server = Server("taxi", 0, env, tmp / "taxi.log")
    try:
        tokens = await seed(db.dsn, secret, opts)
        await server.start()
        if opts.gc_threshold:
            http = HTTP(server.port)
            await http.request("GET", f"/__bench/gc?threshold={opts.gc_threshold}")
            await http.close()
        results["taxi"] = await run_taxi(opts, server, tokens)
    finally:
        await server.stop()
        await db.drop()
    if not opts.no_bare:
        bare = Server("rush_bare", 0, env, tmp / "bare.log")
        try:
            await bare.start()
            results["bare"] = await run_bare(opts, bare)
        finally:
            await bare.stop()
        taxi_us = results["taxi"]["cpu_us_per_report"]
        results["ratio_to_bare"] = taxi_us / max(results["bare"]["cpu_us_per_message"], 1e-9)
    results["wall_s"] = round(time.monotonic() - started, 1)
    say(f"done in {results['wall_s']:.0f} s")
    return results


async def sweep(opts: argparse.Namespace) -> dict[str, Any]:
    """One run per D (--sweep), each measured --sweep-seconds, without the bare run."""
    rows = []
    for drivers in (int(d) for d in opts.sweep.split(",")):
        one = argparse.Namespace(
            **{**vars(opts), "drivers": drivers, "no_bare": True, "overload_seconds": 0}
        )
        one.seconds = opts.sweep_seconds
        result = await main(one)
        rows.append(rush_report.sweep_row(result))
        sys.stdout.write(rush_report.sweep_table(rows[-1:], header=len(rows) == 1))
        sys.stdout.flush()
    largest = rush_report.largest(rows)
    results: dict[str, Any] = {"sweep": rows, "largest_d_meeting_goals": largest}
    if largest is not None and opts.overload_seconds > 0:
        # The largest sustainable D in full (window, bare ceiling), then the overload
        # phase at twice its load.
        results["at_largest"] = await main(argparse.Namespace(**{**vars(opts), "drivers": largest}))
    return results


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rush", description=__doc__)
    parser.add_argument("--drivers", type=int, default=10_000)
    parser.add_argument("--trips", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=180.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare endpoint run")
    parser.add_argument(
        "--overload-seconds",
        type=float,
        default=60.0,
        help="after the window: twice the load this long (0: no overload phase)",
    )
    parser.add_argument(
        "--recovery-seconds",
        type=float,
        default=20.0,
        help="after the overload phase: the steady load again, watched this long",
    )
    parser.add_argument(
        "--overload-queue-seconds",
        type=float,
        default=None,
        help="the server's OVERLOAD_QUEUE_SECONDS (default: the contract's, 2)",
    )
    parser.add_argument(
        "--gc",
        choices=["tuned", "default"],
        default="tuned",
        help="the server's collector: taxi.core.gcpolicy (as `taxi serve`) or CPython's defaults",
    )
    parser.add_argument(
        "--gc-threshold", default=None, help="A,B,C: gc.set_threshold in the server (experiments)"
    )
    parser.add_argument("--sweep", default=None, help="comma-separated D values, e.g. 2500,5000")
    parser.add_argument(
        "--sweep-seconds", type=float, default=SWEEP_SECONDS, help="measured per D in a sweep"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1/test")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw stacks here")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    opts = options(argv)
    if opts.sweep:
        results = uvloop.run(sweep(opts))
        text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
        summary = rush_report.sweep_table(results["sweep"]) + (
            f"\nlargest D meeting every goal ({opts.sweep_seconds:.0f} s measured per D): "
            f"{results['largest_d_meeting_goals']}\n"
        )
        if "at_largest" in results:
            summary += rush_report.table(results["at_largest"])
    else:
        results = uvloop.run(main(opts))
        text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
        summary = rush_report.table(results)
    if opts.out:
        opts.out.write_text(text)
    sys.stdout.write(text + "\n" + summary)
    return results


if __name__ == "__main__":
    run()
