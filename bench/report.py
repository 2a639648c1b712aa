"""The printed table (the JSON under bench/results/ has every figure)."""

from __future__ import annotations

from typing import Any

GOAL_P99_MS = 250
GOAL_DELIVERIES = 20_000
GOAL_KIB = 40
GOAL_HTTP_RATIO = 0.5
# Optional fan-out runs: python -m bench --memory-row / --gc-freeze-row.
EXTRA_ROWS = {
    "memory": "taxi, memory:// broadcast",
    "frozen": "taxi, gc.freeze() after subscribing",
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _grid(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for r in cells:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out) + "\n"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:,.1f}x"


def _memory(run: dict[str, Any]) -> dict[str, float | None]:
    """KiB per socket+subscription at the largest N, from the baseline and per step."""
    mem = {m["label"]: m for m in run["memory"]}
    base = mem.get("baseline")
    subs = [m for m in run["memory"] if m["label"].endswith("sockets, tripUpdated")]
    acked = [m for m in run["memory"] if m["label"].endswith("sockets, acked")]
    if not base or not subs:
        return {"total": None, "socket": None, "subscription": None}
    top = subs[-1]
    total = (top["rss_kib"] - base["rss_kib"]) / top["sockets"]
    socket = sub = None
    if acked:
        # The last growth step: acked sockets first, then their subscriptions.
        prev = subs[-2]["rss_kib"] if len(subs) > 1 else base["rss_kib"]
        grown = top["sockets"] - (subs[-2]["sockets"] if len(subs) > 1 else 0)
        socket = (acked[-1]["rss_kib"] - prev) / grown
        sub = (top["rss_kib"] - acked[-1]["rss_kib"]) / grown
    return {"total": total, "socket": socket, "subscription": sub}


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    pk = meta["packages"]
    out = [
        f"taxi bench  {meta['when']}  git {meta['git']}  taxi/ from {meta.get('taxi_source')}"
        f"  total {meta.get('total_s', '?')} s\n",
        f"Python {meta['python']} ({meta['implementation']}), "
        f"{meta['cores']} cores ({meta['cpu']}), "
        f"Linux {meta['kernel']}, PostgreSQL {meta['postgresql']}, Redis {meta['redis']}\n",
        "packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v) + "\n",
        "server: ONE uvicorn process pinned to core 0 (uvloop, httptools, no per-message "
        "deflate), TAXI_ENV=production, PostgreSQL + Redis broadcast; load generator: one "
        "process pinned to core 1 (raw asyncio sockets, uvloop); PostgreSQL and Redis "
        "themselves are not pinned.\n",
    ]
    fan = results["fanout"]
    taxi, ceiling = fan.get("taxi"), fan.get("ceiling")
    if taxi:
        out.append(
            "\nFan-out: one committed change -> N subscribers on one server process. Latency "
            "from the event's publish\ntimestamp (`at`, taken right after the commit) to each "
            "client's receipt; 'req p99' from just before the mutation's request; 'gc ms': the\n"
            "server's garbage collections inside the window, all generations.\n"
        )
        rows = []
        ceil_events = {(e["subscription"], e["n"]): e for e in (ceiling or {}).get("events", [])}
        extra = {
            kind: {(e["subscription"], e["n"]): e for e in fan[kind]["events"]}
            for kind in EXTRA_ROWS
            if kind in fan
        }
        for e in taxi["events"]:
            key = (e["subscription"], e["n"])
            c = ceil_events.get(key)
            for label, ev in (
                ("taxi (GraphQL)", e),
                ("ceiling (bare WS)", c),
                *((EXTRA_ROWS[kind], events.get(key)) for kind, events in extra.items()),
            ):
                if ev is None:
                    continue
                p = ev["from_publish"]
                if p["p99_ms"] is None:  # memory://: no Redis message to read `at` from
                    p = ev["from_request"]
                    label += " (from request)"
                rows.append(
                    [
                        f"{ev['subscription']} {label}",
                        ev["n"],
                        f"{ev['got']}/{ev['n']}",
                        p["p50_ms"],
                        p["p99_ms"],
                        p["max_ms"],
                        ev["from_request"]["p99_ms"],
                        ev["server_cpu_s"],
                        ev.get("gc_ms"),
                        ev["loadgen_cpu_s"],
                        _ratio(e["from_publish"]["p99_ms"], c["from_publish"]["p99_ms"])
                        if ev is e and c
                        else "",
                    ]
                )
        out.append(
            _grid(
                [
                    "subscription / server",
                    "N",
                    "got",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "req p99",
                    "srv cpu s",
                    "gc ms",
                    "gen cpu s",
                    "ours/ceil p99",
                ],
                rows,
            )
        )
        out.append(
            "\nMemory: server RSS growth per idle authenticated socket with one subscription\n"
        )
        rows = []
        runs = [("taxi (GraphQL)", taxi), ("ceiling (bare WS)", ceiling)]
        runs += [(EXTRA_ROWS[k], fan[k]) for k in EXTRA_ROWS if k in fan]
        for label, run in runs:
            if run:
                m = _memory(run)
                top = [x for x in run["memory"] if x["label"].endswith("tripUpdated")][-1]
                rows.append(
                    [
                        label,
                        top["sockets"],
                        m["total"],
                        m["socket"],
                        m["subscription"],
                        round(top["rss_kib"] / 1024, 1),
                    ]
                )
        out.append(
            _grid(
                ["server", "N", "KiB/sub (0->N)", "KiB/socket", "KiB/subscr.", "RSS MiB at N"],
                rows,
            )
        )
        out.append(
            "\nSustained delivery: tripUpdated on N subscribers, events at a fixed rate "
            "(published to Redis), until p99 > 1 s\n"
        )
        rows = []
        for label, run in runs:
            for s in (run or {}).get("sustained", []):
                rows.append(
                    [
                        label,
                        s["n"],
                        s["rate"],
                        s["delivered"],
                        s["expected"],
                        s["delivered_per_s"],
                        _fmt(s["cpu_s_per_1000"], 3),
                        s["p50_ms"],
                        s["p99_ms"],
                        s["loadgen_cpu_s"],
                    ]
                )
        out.append(
            _grid(
                [
                    "server",
                    "N",
                    "ev/s",
                    "delivered",
                    "published*N",
                    "deliv/s",
                    "cpu s/1000",
                    "p50 ms",
                    "p99 ms",
                    "gen cpu s",
                ],
                rows,
            )
        )
    http = results.get("http", {})
    if http:
        out.append(
            "\nHTTP: trips(first: 20) with rider and driver, 50 concurrent keep-alive clients\n"
        )
        rows = []
        for endpoint, which in (("taxi POST /graphql", "taxi"), ("bare Starlette+asyncpg", "bare")):
            h = http.get(which)
            if h:
                rows.append(
                    [
                        endpoint,
                        h["rps"],
                        h["p50_ms"],
                        h["p99_ms"],
                        h["errors"],
                        h["server_cpu_share"],
                        h["loadgen_cpu_share"],
                    ]
                )
        out.append(
            _grid(["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "srv cpu", "gen cpu"], rows)
        )
        if http.get("same_rows") is not None:
            out.append(f"same rows in both answers: {http['same_rows']}\n")
    race = results.get("race")
    if race:
        out.append(
            f"\nAccept race: {race['drivers']} drivers, {race['trips']} trips, "
            f"{race['processes']} server processes (cores 0 and 1)\n"
        )
        out.append(
            _grid(
                [
                    "attempts",
                    "accepted",
                    "distinct trips",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "errors by code",
                    "non-CONFLICT",
                ],
                [
                    [
                        race["attempts"],
                        race["accepted"],
                        race["distinct_trips_won"],
                        race["p50_ms"],
                        race["p99_ms"],
                        race["max_ms"],
                        str(race["error_codes"]),
                        race["other_errors"],
                    ]
                ],
            )
        )
    out.append(goals(results))
    return "".join(out)


def goals(results: dict[str, Any]) -> str:
    fan = results.get("fanout", {})
    taxi = fan.get("taxi") or {}
    rows = []
    events = [e for e in taxi.get("events", []) if e["n"] == 10_000]
    for e in events:
        p99 = e["from_publish"]["p99_ms"]
        ok = p99 is not None and p99 <= GOAL_P99_MS and e["got"] == e["n"]
        rows.append(
            [
                f"{e['subscription']} N=10,000 p99 <= {GOAL_P99_MS} ms",
                _fmt(p99) + " ms",
                "met" if ok else "MISSED",
            ]
        )
    sustained = [s["delivered_per_s"] for s in taxi.get("sustained", []) if s["delivered_per_s"]]
    if sustained:
        best = max(sustained)
        rows.append(
            [
                f">= {GOAL_DELIVERIES:,} deliveries/s per core",
                f"{best:,}/s",
                "met" if best >= GOAL_DELIVERIES else "MISSED",
            ]
        )
    if taxi.get("memory"):
        kib = _memory(taxi)["total"]
        rows.append(
            [
                f"<= {GOAL_KIB} KiB RSS per idle subscription",
                _fmt(kib) + " KiB",
                "met" if kib is not None and kib <= GOAL_KIB else "MISSED",
            ]
        )
    http = results.get("http", {})
    if http.get("taxi") and http.get("bare"):
        ratio = http["taxi"]["rps"] / http["bare"]["rps"]
        rows.append(
            [
                f"trips >= {GOAL_HTTP_RATIO}x bare endpoint",
                f"{ratio:.2f}x",
                "met" if ratio >= GOAL_HTTP_RATIO else "MISSED",
            ]
        )
    if not rows:
        return ""
    return "\nGoals (issue 5)\n" + _grid(["goal", "measured", ""], rows)


def profile_table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    busy = results["server_cpu_s"] / results["wall_s"] if results["wall_s"] else 0
    out = [
        f"py-spy profile of the fan-out at N={results['n']:,}, taxi/ from "
        f"{meta.get('taxi_source')}, Python {meta.get('python')}\n"
        f"{results['events']} events (tripUpdated and tripRequested alternating), "
        f"{results['samples']} samples at {results['rate']} Hz; server busy "
        f"{results['server_cpu_s']} s of {results['wall_s']} s ({busy:.0%})\n"
    ]
    rows = [
        [
            e["subscription"],
            e["n"],
            e["got"],
            e["from_publish"]["p50_ms"],
            e["from_publish"]["p99_ms"],
            e["server_cpu_s"],
            e.get("gc_pause_ms"),
            e.get("gc_max_ms"),
        ]
        for e in results["fanout_events"]
    ]
    out.append("\nper event, under the profiler:\n")
    out.append(
        _grid(
            ["subscription", "N", "got", "p50 ms", "p99 ms", "srv cpu s", "gc ms", "gc max"],
            rows,
        )
    )
    out.append(
        f"(samples of other threads, idle thread-pool workers, left out: "
        f"{results['other_thread_samples']})\n"
    )
    out.append("\nwhere the samples are (by the innermost frame's package):\n")
    out.append(_grid(["package", "self %"], [[k, v] for k, v in results["by_package"]]))
    out.append("\nsamples with the package anywhere on the stack:\n")
    out.append(_grid(["package", "on stack %"], [[k, v] for k, v in results["on_stack"]]))
    out.append("\ntop frames, self time:\n")
    out.append(_grid(["frame", "self %"], [[k, v] for k, v in results["self"]]))
    out.append("\ntop frames, inclusive time:\n")
    out.append(_grid(["frame", "total %"], [[k, v] for k, v in results["total"]]))
    out.append(f"\nraw collapsed stacks: {results['raw']}\n")
    return "".join(out)
