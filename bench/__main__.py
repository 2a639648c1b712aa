"""`python -m bench` (what `make bench` runs) and `python -m bench profile`.

The run, in order (each measurement next to its baseline, in the same run):

1. A throw-away PostgreSQL database (`taxi_bench_<pid>_<hex>`), migrated; dropped at
   the end whatever happens.
2. The server under test (`bench.server taxi`: one uvicorn process on core 0,
   PostgreSQL + Redis, TAXI_ENV=production): accounts through the API, rows by SQL;
   HTTP `trips(first: 20)` at 50 concurrent clients; then the fan-out run.
3. The ceiling (`bench.server ceiling`: the same app with a bare WebSocket route that
   forwards the broadcast payload, and a bare asyncpg `trips` route) on core 0: the
   same HTTP load and the same fan-out run.
4. The accept race: two server processes (cores 0 and 1), 100 drivers, 100 trips.
5. Rush hour (`bench.rush`, its own database and server): D drivers reporting positions,
   T trips under way, R dispatched requests a second (`--rush-*`; the issue's scale by
   default), and the bare GEOADD + PUBLISH endpoint on the same sockets.
6. A ride's steps one by one (`bench.lifecycle`, its own database and server): server
   CPU per requestTrip, acceptTrip and status step, beside a position report.

A fan-out run (`bench.loadgen`, on core 1): warm up, read the RSS; grow to 1,000,
5,000 and 10,000 authenticated sockets, each subscribed to `tripUpdated` of one
trip, and at each size commit one change to the trip (IN_PROGRESS, COMPLETED, rated);
then subscribe 1,000, 5,000 and 10,000 of the same sockets to `tripRequested` and at
each size have a rider request a trip (cancelled after). Latency is from the event's
publish timestamp (`at`, read from Redis by the generator) to each client's receipt,
and also from just before the mutation's HTTP request. Last, 1,000 sockets stay and
events are published at rising rates until p99 passes 1 s (sustained delivery)."""

from __future__ import annotations

import argparse
import sys
import time

import uvloop

from bench import lifecycle, report, rush, rush_report
from bench.meta import save
from bench.prepare import ROOT
from bench.proc import raise_open_files
from bench.profile import profile
from bench.run import Run

PHASES = ("http", "fanout", "race", "rush", "lifecycle")


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "profile"])
    parser.add_argument(
        "--steps", default="1000,5000,10000", help="subscriber counts (default 1000,5000,10000)"
    )
    parser.add_argument("--http-seconds", type=float, default=8.0)
    parser.add_argument("--sustained-seconds", type=float, default=3.0)
    parser.add_argument(
        "--ref",
        help="benchmark taxi/ as committed at this git ref (git archive) instead of the "
        "working tree; bench/ itself always comes from the working tree",
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help="comma-separated phases to run (default: http,fanout,race,rush,lifecycle)",
    )
    # Rush hour (bench/rush.py): the scale by default.
    parser.add_argument("--rush-drivers", type=int, default=10_000)
    parser.add_argument("--rush-trips", type=int, default=1_000)
    parser.add_argument("--rush-rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--rush-seconds", type=float, default=180.0)
    parser.add_argument(
        "--memory-row", action="store_true", help="also run the fan-out on memory:// broadcast"
    )
    parser.add_argument(
        "--gc-freeze-row",
        action="store_true",
        help="also run the fan-out with gc.freeze() after each batch of subscriptions "
        "(an experiment: the collector then never rescans the subscriptions' objects)",
    )
    parser.add_argument("--profile-n", type=int, default=5000)
    parser.add_argument("--profile-events", type=int, default=12)
    parser.add_argument(
        "--native",
        action="store_true",
        help="profile: py-spy --native, so time in C (the garbage collector) shows",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = options(argv)
    raise_open_files()
    started = time.monotonic()
    if opts.command == "profile":
        results = uvloop.run(profile(Run(opts)))
        path = save(results, "profile")
        sys.stdout.write(report.profile_table(results))
    else:
        phases = set(opts.only.split(","))
        own = {"rush", "lifecycle"}  # each starts its own database and server
        results = uvloop.run(Run(opts).main()) if phases - own else {"meta": {}}
        if "rush" in phases:
            argv = ["--drivers", str(opts.rush_drivers), "--trips", str(opts.rush_trips)]
            argv += ["--rate", str(opts.rush_rate), "--seconds", str(opts.rush_seconds)]
            results["rush"] = uvloop.run(rush.main(rush.options(argv)))
        if "lifecycle" in phases:
            results["lifecycle"] = uvloop.run(lifecycle.main(lifecycle.options([])))
        results["meta"]["total_s"] = round(time.monotonic() - started, 1)
        path = save(results, "bench")
        if phases - own:
            sys.stdout.write(report.table(results))
        if "rush" in phases:
            sys.stdout.write(rush_report.table(results["rush"]))
        if "lifecycle" in phases:
            sys.stdout.write(lifecycle.table(results["lifecycle"]["lifecycle"]))
    sys.stdout.write(f"\nwritten: {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
