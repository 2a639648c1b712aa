"""The rush-hour tables: one run against the issue's goals (Markdown), and the sweep's
one row per D."""

from __future__ import annotations

from typing import Any

# Issue 21's goals ("Done when").
GOALS = {
    "updatePosition_rtt": ("updatePosition round trip p99", 50.0),
    "position_to_rider": ("position -> rider's driverLocation frame p99", 100.0),
    "request_to_offer": ("request -> first-wave offer frames p99", 250.0),
}
GOAL_CPU_US = 150.0  # server CPU per answered position report, the trip lifecycle included
GOAL_ANSWERED = 0.999  # of the reports sent in the window
GOAL_RSS_MIB = 1024.0
GOAL_PAUSE_MS = 50.0  # the longest collector pause
GOAL_RATIO = 2.5  # CPU per report over the bare endpoint's per message
# The overload phase: accepted operations' p99, shed answers' p99, RSS over the steady
# run's, seconds back to the steady figures.
GOAL_OVERLOAD_P99_MS = 1000.0
GOAL_SHED_P99_MS = 50.0
GOAL_OVERLOAD_RSS = 1.2
GOAL_RECOVERY_S = 10.0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _list(values: list[Any]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values if v is not None) or "none"


def table(results: dict[str, Any]) -> str:
    """The run against the issue's goals, as Markdown, then what the server went through."""
    o, taxi = results["options"], results["taxi"]
    lines = [
        f"\nRush hour: D={o['drivers']} drivers, T={o['trips']} trips under way, "
        f"R={o['rate']}/s requests, {taxi['seconds']:.0f} s measured\n",
        "| measure | goal | p50 | p99 | p99 per 30 s window (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, (name, goal) in GOALS.items():
        m = taxi.get(key) or {}
        lines.append(
            f"| {name} (n={m.get('n', 0):,}) | ≤ {goal:.0f} ms | {_ms(m.get('p50_ms'))} | "
            f"{_ms(m.get('p99_ms'))} | {_list(m.get('p99_ms_per_window', []))} |"
        )
    lines.append(
        f"| server CPU per position report | ≤ {GOAL_CPU_US:.0f} µs | "
        f"{taxi['cpu_us_per_report']:,.0f} µs | | {taxi['position_reports']:,} reports "
        f"answered of {taxi['position_reports_sent']:,} sent |"
    )
    if "bare" in results:
        bare = results["bare"]
        lines.append(
            f"| bare GEOADD+PUBLISH endpoint, CPU per message | | "
            f"{bare['cpu_us_per_message']:,.0f} µs | | ratio {results['ratio_to_bare']:.1f}x; "
            f"{bare['messages']:,} answered of {bare['messages_sent']:,} sent |"
        )
    lag = taxi.get("generator_tick_lag") or {}
    gc, rss = taxi["gc"], taxi["rss_mib"]
    objects = gc.get("objects_at_end") or []
    lines += [
        "",
        f"generator: {taxi['generator_cpu_pct']:.0f} % of its core; tick lag p99 "
        f"{_ms(lag.get('p99_ms'))}"
        + (
            f" (bare run: {results['bare']['generator_cpu_pct']:.0f} %)"
            if "bare" in results
            else ""
        ),
        f"server full (gen-2) collections in the window: {_pauses(gc['gen2_in_window'])}; "
        f"young > 20 ms: {len(gc['young_over_20ms_in_window'])}; "
        f"whole run: {_pauses(gc['gen2_whole_run'])}",
        "collector in the window (gen 0, 1, 2): {collections} collections, "
        "{cpu_seconds} CPU s, {share_of_server_cpu_pct} % of the server's CPU".format(
            **taxi["gc_in_window"]
        ),
        f"server heap at the end: {sum(objects):,} tracked objects (by generation "
        f"{_list(objects)}), {gc['frozen_at_end']:,} frozen; thresholds {gc['threshold']}",
        f"server RSS: {rss['measured_start']:,.0f} MiB at the window's start, "
        f"{rss['measured_end']:,.0f} MiB at its end, {rss['max']:,.0f} MiB max",
        "timeline (s since the server started, its CPU s by then): "
        + ", ".join(f"{k} {t:,.0f} ({c:,.0f})" for k, (t, c) in taxi["timeline_s"].items())
        + f"; whole phase {results.get('wall_s', 0):,.0f} s",
    ]
    if taxi.get("errors"):
        lines.append(f"errors: {taxi['errors']}")
    if taxi.get("errors_outside_window"):
        outside = taxi["errors_outside_window"]
        lines.append(f"errors in the warm-up and after the window (not in it): {outside}")
    if "overload" in taxi:
        lines += overload_lines(taxi["overload"], rss["measured_end"])
    return "\n".join(lines) + "\n"


def overload_lines(o: dict[str, Any], steady_rss: float | None) -> list[str]:
    """The overload phase against its goals (issue 21)."""

    def p99(key: str) -> str:
        return _ms((o.get(key) or {}).get("p99_ms"))

    shed = (o.get("shed_rtt") or {}).get("n", 0)
    rss = o.get("rss_max_mib")
    ratio = f"{rss / steady_rss:.2f}x" if rss and steady_rss else "-"
    back = o.get("recovered_after_s")
    return [
        "",
        f"Overload: twice the load for {o['seconds']:.0f} s",
        "| measure | goal | measured |",
        "| --- | --- | --- |",
        f"| accepted updatePosition p99 | ≤ {GOAL_OVERLOAD_P99_MS:.0f} ms | "
        f"{p99('updatePosition_rtt')} |",
        f"| accepted requestTrip p99 | ≤ {GOAL_OVERLOAD_P99_MS:.0f} ms | "
        f"{p99('requestTrip_rtt')} |",
        f"| shed requestTrip (SERVICE_UNAVAILABLE + retryAfter) p99 | ≤ {GOAL_SHED_P99_MS:.0f} ms "
        f"| {p99('shed_rtt')} ({shed:,} shed) |",
        f"| RSS max over the steady window's end | ≤ {GOAL_OVERLOAD_RSS}x | {ratio} |",
        f"| back within {o['recovered_within_ms']:,.0f} ms (each second's p99) after the load "
        f"drops | ≤ {GOAL_RECOVERY_S:.0f} s | {_seen(back)} (every report within it: "
        f"{_seen(o.get('every_report_within_after_s'))}; p99 per second: "
        f"{_list(o.get('recovery_p99_ms_per_second', []))} ms) |",
        f"| server CPU per answered report | | {o['cpu_us_per_report']:,.0f} µs "
        f"({o['position_reports']:,} answered of {o['position_reports_sent']:,} sent) |",
        f"errors: {o['errors']}" if o.get("errors") else "errors: none",
    ]


def _seen(seconds: float | None) -> str:
    return "not seen" if seconds is None else f"{seconds:.1f} s"


def _pauses(pauses: list[list[float | None]]) -> str:
    """How many, the longest (with its CPU time) and the total."""
    if not pauses:
        return "none"
    longest = max(pauses, key=lambda p: p[0] or 0.0)
    cpu = "" if longest[1] is None else f" (CPU {longest[1]:,.0f} ms)"
    total = sum(p[0] or 0.0 for p in pauses)
    return f"{len(pauses)}, longest {longest[0]:,.0f} ms{cpu}, total {total:,.0f} ms"


def meets(taxi: dict[str, Any]) -> bool:
    for key, (_, goal) in GOALS.items():
        p99 = (taxi.get(key) or {}).get("p99_ms")
        if p99 is None or p99 > goal:
            return False
    answered = taxi["position_reports"] / max(taxi["position_reports_sent"], 1)
    longest = max((p[0] or 0.0 for p in taxi["gc"]["gen2_in_window"]), default=0.0)
    rss = taxi["rss_mib"]["max"] or 0.0
    return bool(
        taxi["cpu_us_per_report"] <= GOAL_CPU_US
        and answered >= GOAL_ANSWERED
        and longest <= GOAL_PAUSE_MS
        and rss <= GOAL_RSS_MIB
    )


def sweep_row(results: dict[str, Any]) -> dict[str, Any]:
    taxi = results["taxi"]
    row: dict[str, Any] = {"drivers": int(results["options"]["drivers"])}
    for key in GOALS:
        row[key] = (taxi.get(key) or {}).get("p99_ms")
    row["cpu_us_per_report"] = taxi["cpu_us_per_report"]
    row["generator_cpu_pct"] = taxi["generator_cpu_pct"]
    row["gen2_max_ms"] = max((p[0] for p in taxi["gc"]["gen2_in_window"]), default=0.0)
    row["rss_end_mib"] = taxi["rss_mib"]["measured_end"]
    row["meets_goals"] = meets(taxi)
    return row


def sweep_table(rows: list[dict[str, Any]], *, header: bool = True) -> str:
    out = []
    if header:
        out += [
            "\n| D | update p99 | position->rider p99 | request->offer p99 | CPU/report "
            "| generator CPU | gen-2 max | RSS end | meets goals |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
    for r in rows:
        cells = [_ms(r[k]) for k in GOALS]
        out.append(
            f"| {r['drivers']:,} | {' | '.join(cells)} | {r['cpu_us_per_report']:,.0f} µs | "
            f"{r['generator_cpu_pct']:.0f} % | {r['gen2_max_ms']:,.0f} ms | "
            f"{r['rss_end_mib'] or 0:,.0f} MiB | {'yes' if r['meets_goals'] else 'no'} |"
        )
    return "\n".join(out) + "\n"


def largest(rows: list[dict[str, Any]]) -> int | None:
    """The largest D that met every goal (None: none did)."""
    return max((r["drivers"] for r in rows if r["meets_goals"]), default=None)
