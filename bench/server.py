"""The server under test, started by the orchestrator as
`taskset -c 0 python -m bench.server {taxi|ceiling} PORT`.

It runs uvicorn with the options `taxi serve` uses (uvloop, httptools, no per-message
deflate, the same limits), in one process, with two differences that only a benchmark
needs: the log level is `warning` (no access log line per request), and every channel
gets a per-run prefix (CHANNEL_PREFIX; code older than that setting is patched below),
because the Redis server is shared and pub/sub channels are global across its
databases: nobody else's events reach our subscribers, and ours reach nobody."""

from __future__ import annotations

import gc
import os
import sys
import time

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from taxi import events
from taxi.config import Settings


def _isolate_channels() -> None:
    """taxi with CHANNEL_PREFIX (set by the orchestrator) needs nothing; older code
    named its shared channels `taxi:pool` and `taxi:trips`, which we rename here."""
    prefix = os.environ.get("BENCH_CHANNEL_PREFIX")
    if prefix and not hasattr(events, "full_channel"):
        # Read at call time by the publisher and by the live resolvers.
        events.POOL = f"{prefix}:pool"
        events.TRIPS = f"{prefix}:trips"


GC_COUNTS = [0, 0, 0]
GC_SECONDS = [0.0, 0.0, 0.0]


def _watch_gc() -> None:
    """Counts every garbage collection and its duration per generation (read by the
    load generator from GET /__bench/gc); any of the oldest generation or slower than
    20 ms also goes to stderr as `bench-gc gen=G ms=T collected=C at=T`, which the
    orchestrator matches to the measurement windows. py-spy cannot name the collector:
    it charges its time to whichever Python line allocated when it ran."""
    started = [0.0]
    counts, seconds = GC_COUNTS, GC_SECONDS

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        gen = info["generation"]
        counts[gen] += 1
        seconds[gen] += took
        if gen == 2 or took > 0.02:
            sys.stderr.write(
                f"bench-gc gen={gen} ms={took * 1000:.1f} "
                f"collected={info['collected']} at={time.time():.3f}\n"
            )

    gc.callbacks.append(callback)


def _with_gc_endpoint(app: ASGIApp) -> ASGIApp:
    """GET /__bench/gc: the totals above; `?collect=1` first runs a full collection,
    `?freeze=1` moves every object alive into the permanent generation (gc.freeze),
    for the frozen-heap experiment."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/__bench/gc":
            await app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if b"collect=1" in query:
            gc.collect()
        if b"freeze=1" in query:
            gc.freeze()
        totals = {"collections": GC_COUNTS, "seconds": GC_SECONDS}
        body = orjson.dumps({**totals, "frozen": gc.get_freeze_count()})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def taxi_app() -> ASGIApp:
    from taxi.main import create_app

    _isolate_channels()
    _watch_gc()
    return _with_gc_endpoint(create_app(Settings()))


def ceiling_app() -> ASGIApp:
    from bench.ceiling import create_ceiling_app

    _isolate_channels()
    _watch_gc()
    return _with_gc_endpoint(create_ceiling_app(Settings()))


def rush_bare_app() -> ASGIApp:
    from bench.rush_bare import create_bare_app

    return create_bare_app()


def main(argv: list[str]) -> None:
    import uvicorn

    kind, port = argv[0], int(argv[1])
    settings = Settings()
    uvicorn.run(
        f"bench.server:{kind}_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        ws="taxi.server:WebSocketProtocol",  # as `taxi serve`: the frame-write seam
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
