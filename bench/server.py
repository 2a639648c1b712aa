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
from collections import Counter
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bench import gclog
from taxi.core.config import Settings
from taxi.domain import events

TOP_TYPES = 40


def _isolate_channels() -> None:
    """taxi with CHANNEL_PREFIX (set by the orchestrator) needs nothing; older code
    named its shared channels `taxi:pool` and `taxi:trips`, which we rename here."""
    prefix = os.environ.get("BENCH_CHANNEL_PREFIX")
    if prefix and not hasattr(events, "full_channel"):
        # Read at call time by the publisher and by the live resolvers.
        events.POOL = f"{prefix}:pool"
        events.TRIPS = f"{prefix}:trips"


def _with_gc_endpoint(app: ASGIApp) -> ASGIApp:
    """GET /__bench/gc: collections and seconds per generation (bench.gclog),
    thresholds. Actions, in this order: `?threshold=A,B,C` (gc.set_threshold),
    `?unfreeze=1` (gc.unfreeze),
    `?collect=1` (a full collection; how many it freed), `?freeze=1` (every object
    alive into the permanent generation, for the frozen-heap experiments). `?objects=1`
    adds the objects the collector tracks per generation and the frozen ones,
    `?types=1` the commonest types among them (each a walk of the heap: seconds at
    millions of objects, so only between measurements); `?young=1` the commonest types
    in each generation, the permanent one apart (what collections walk; cheap)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/__bench/gc":
            await app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        totals: dict[str, Any] = {
            "collections": gclog.COUNTS,
            "seconds": gclog.SECONDS,
            "cpu_seconds": gclog.CPU,
        }
        for part in query.split(b"&"):
            if part.startswith(b"threshold="):  # a,b,c: gc.set_threshold, for experiments
                gc.set_threshold(*(int(n) for n in part[len(b"threshold=") :].split(b",")))
        if b"unfreeze=1" in query:
            gc.unfreeze()
        if b"garbage=1" in query:  # what the collection frees, by type (it keeps it)
            gc.set_debug(gc.DEBUG_SAVEALL)
            totals["collected"] = gc.collect()
            gc.set_debug(0)
            kinds = Counter(type(o).__qualname__ for o in gc.garbage)
            totals["garbage"] = kinds.most_common(TOP_TYPES)
            gc.garbage.clear()
        elif b"collect=1" in query:
            totals["collected"] = gc.collect()
        if b"freeze=1" in query and b"unfreeze=1" not in query:
            gc.freeze()
        totals["threshold"] = gc.get_threshold()
        if b"objects=1" in query:
            # A walk of each list: gc.get_freeze_count() too walks the frozen one (it
            # stopped the loop ~0.2 s at 2.4 M frozen objects, at each rush window's start).
            totals["objects"] = [len(gc.get_objects(g)) for g in range(3)]
            totals["frozen"] = gc.get_freeze_count()
        if b"young=1" in query:  # the commonest types per generation, frozen ones apart
            totals["young"] = [
                Counter(type(o).__qualname__ for o in gc.get_objects(g)).most_common(TOP_TYPES)
                for g in range(3)
            ]
        if b"types=1" in query:
            kinds = Counter(type(o).__qualname__ for o in gc.get_objects())
            totals["types"] = kinds.most_common(TOP_TYPES)
        body = orjson.dumps(totals)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def taxi_app() -> ASGIApp:
    from taxi.main import create_app

    _isolate_channels()
    gclog.watch()
    return _with_gc_endpoint(create_app(Settings()))


def ceiling_app() -> ASGIApp:
    from bench.ceiling import create_ceiling_app

    _isolate_channels()
    gclog.watch()
    return _with_gc_endpoint(create_ceiling_app(Settings()))


def rush_bare_app() -> ASGIApp:
    from bench.rush_bare import create_bare_app

    return create_bare_app()


def main(argv: list[str]) -> None:
    import uvicorn

    from taxi.transport.server import HTTP, WEBSOCKET

    kind, port = argv[0], int(argv[1])
    os.environ.setdefault("GC_TUNING", "1")  # as `taxi serve` (taxi.core.gcpolicy)
    settings = Settings()
    uvicorn.run(
        f"bench.server:{kind}_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http=HTTP,  # as `taxi serve`: the header limit and read deadline
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        ws=WEBSOCKET,  # as `taxi serve`: the frame-write seam
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
