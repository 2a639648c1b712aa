"""The load generator: `taskset -c 1 python -m bench.loadgen CONFIG.json OUT.json`.

One scenario per run (`fanout`, `http`, `race`), described by the orchestrator in
CONFIG; the measurements go to OUT as JSON. It talks to the server only over its
sockets, reads the server's RSS and CPU time from /proc, and listens on Redis to
learn each event's publish timestamp (`at`), which GraphQL clients cannot see."""

from __future__ import annotations

import asyncio
import math
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson
import uvloop
from redis import asyncio as aioredis

from bench.gqlws import connect
from bench.net import HTTP, WS, error_code, gql_data, ws_connect
from bench.proc import cpu_seconds, raise_open_files, rss_kib, settle
from tests import gqlws

TRIP_FIELDS = """id created updated pickUpAddress dropOffAddress status rating
rider { id username firstName lastName group photoUrl rating }
driver { id username firstName lastName group photoUrl rating }
driverLocation { latitude longitude heading recordedAt }"""
SUB_UPDATED = f"subscription Watch($id: ID!) {{ tripUpdated(id: $id) {{ {TRIP_FIELDS} }} }}"
SUB_REQUESTED = f"subscription Pool {{ tripRequested {{ {TRIP_FIELDS} }} }}"
REQUEST = f"""mutation Request($input: RequestTripInput!) {{
  requestTrip(input: $input) {{ {TRIP_FIELDS} }} }}"""
CANCEL = "mutation Cancel($id: ID!) { cancelTrip(id: $id) { id status } }"
UPDATE = f"""mutation Update($id: ID!, $status: TripStatus!) {{
  updateTripStatus(id: $id, status: $status) {{ {TRIP_FIELDS} }} }}"""
RATE = f"mutation Rate($id: ID!) {{ rateTrip(id: $id, rating: 5) {{ {TRIP_FIELDS} }} }}"
ACCEPT = "mutation Accept($id: ID!) { acceptTrip(id: $id) { id status driver { id } } }"
TRIPS = f"""query Trips {{ trips(first: 20) {{
  totalCount pageInfo {{ hasNextPage endCursor }}
  edges {{ cursor node {{ {TRIP_FIELDS} }} }} }} }}"""
SEQ = re.compile(rb"#s(\d+)#")


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def summary(latencies: list[float]) -> dict[str, Any]:
    lat = sorted(latencies)
    ms = [round(v * 1000, 2) if v is not None else None for v in (pct(lat, 0.5), pct(lat, 0.99))]
    return {"p50_ms": ms[0], "p99_ms": ms[1], "max_ms": round(lat[-1] * 1000, 2) if lat else None}


async def bounded(n: int, limit: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run job(0..n-1) with at most `limit` in flight; the first failure is raised."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(min(limit, n))))


class RedisTap:
    """Subscribes to the benchmark's channels to record every event as published."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.channels = channels
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(*self.channels)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and msg["type"] == "message":
                channel = msg["channel"].decode()
                self.seen.append((time.time(), channel, orjson.loads(msg["data"])))

    def find(self, since: float, channel: str, test: Callable[[dict[str, Any]], bool]) -> Any:
        for at, ch, event in self.seen:
            if at >= since and ch == channel and test(event):
                return event
        return None

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.pubsub.aclose()
        await self.redis.aclose()


# -- fan-out ---------------------------------------------------------------------------


class Fanout:
    """N subscribers on one server; see bench/__main__.py for the sequence."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.port: int = cfg["port"]
        self.pid: int = cfg["pid"]
        self.graphql = cfg["kind"] == "taxi"
        self.trip: str = cfg["trip_id"]
        self.trip_channel: str = cfg["trip_channel"]
        self.pool_channel: str = cfg["pool_channel"]
        self.http = HTTP(self.port)
        self.gc_http = HTTP(self.port)
        self.sockets: list[WS] = []
        self.tap = RedisTap(cfg["redis_url"], [self.trip_channel, self.pool_channel])
        self.out: dict[str, Any] = {"events": [], "memory": [], "sustained": []}

    async def open(self, n: int, first_index: int = 0) -> list[WS]:
        made: list[WS | None] = [None] * n
        token = self.cfg["driver_token"]

        async def one(i: int) -> None:
            if self.graphql:
                ws = await connect(self.port, token, first_index + i)
            else:
                ws = await ws_connect(self.port, "/ceiling", first_index + i)
            made[i] = ws

        await bounded(n, self.cfg.get("connect_concurrency", 32), one)
        return [ws for ws in made if ws is not None]

    async def join(self, sockets: list[WS], which: str) -> None:
        """Subscribe each socket to tripUpdated ("u") or tripRequested ("r")."""

        async def one(i: int) -> None:
            ws = sockets[i]
            if not self.graphql:
                ws.send(self.trip_channel if which == "u" else self.pool_channel)
                if (ok := await ws.recv()) != b"ok":
                    raise RuntimeError(f"ceiling join: {ok!r}")
                return
            query, variables = (
                (SUB_UPDATED, {"id": self.trip}) if which == "u" else (SUB_REQUESTED, {})
            )
            ws.send(gqlws.subscribe(which, query, variables))
            if which == "u":  # tripUpdated sends the current state first
                first = await ws.recv_json()
                if first.get("type") != "next" or first["payload"].get("errors"):
                    raise RuntimeError(f"tripUpdated did not start: {first}")

        await bounded(len(sockets), self.cfg.get("subscribe_concurrency", 16), one)
        await settle(self.pid)  # tripRequested has no first message: wait for the server
        if self.cfg.get("gc_freeze"):
            await self.gc(freeze=True)

    async def gc(self, freeze: bool = False, collect: bool = False) -> dict[str, Any]:
        """The server's garbage-collector totals (bench.server serves them)."""
        path = "/__bench/gc?" + ("freeze=1&" if freeze else "") + ("collect=1" if collect else "")
        status, body = await self.gc_http.request("GET", path)
        if status != 200:
            return {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "frozen": 0}
        data: dict[str, Any] = orjson.loads(body)
        return data

    def memory(self, label: str, sockets: int, subscriptions: int) -> None:
        self.out["memory"].append(
            {
                "label": label,
                "sockets": sockets,
                "subscriptions": subscriptions,
                "rss_kib": rss_kib(self.pid),
            }
        )

    async def event(
        self,
        sub: str,
        n: int,
        trigger: Callable[[], Awaitable[dict[str, Any]]],
        check: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        """One committed change; when did each of the first n sockets receive it?"""
        loop = asyncio.get_running_loop()
        times: list[float] = [0.0] * n
        payloads: list[bytes | None] = [None] * n
        state = {"count": 0, "last": 0.0}
        done = asyncio.Event()

        def sink(ws: WS, now: float, payload: bytes) -> None:
            i = ws.index
            if i < n and payloads[i] is None:
                payloads[i] = payload
                times[i] = now
                state["count"] += 1
                state["last"] = now
                if state["count"] >= n:
                    done.set()

        targets = self.sockets[:n]
        for ws in targets:
            ws.sink = sink
        await settle(self.pid)
        gc0 = await self.gc()
        server_cpu, gen_cpu = cpu_seconds(self.pid), time.process_time()
        t0 = time.time()
        info = await trigger()
        start = loop.time()
        while not done.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.25)
            quiet = state["count"] and time.time() - state["last"] > 15
            if quiet or loop.time() - start > self.cfg.get("event_timeout", 60):
                break
        for ws in targets:
            ws.sink = None
        server_cpu = cpu_seconds(self.pid) - server_cpu
        gen_cpu = time.process_time() - gen_cpu
        gc1 = await self.gc()
        channel = self.trip_channel if sub == "u" else self.pool_channel
        published = self.tap.find(t0, channel, lambda e: e["trip"]["id"] == info["id"])
        at = published["at"] if published else None
        from_pub, from_req, valid = [], [], 0
        for when, payload in zip(times, payloads, strict=True):
            if payload is None or not check(self._trip(payload, sub)):
                continue
            valid += 1
            from_req.append(when - t0)
            if at is not None:
                from_pub.append(when - at)
        result = {
            "subscription": "tripUpdated" if sub == "u" else "tripRequested",
            "n": n,
            "connected": len(self.sockets),
            "got": valid,
            "from_publish": summary(from_pub),
            "from_request": summary(from_req),
            "commit_to_publish_ms": round((at - t0) * 1000, 2) if at else None,
            "server_cpu_s": round(server_cpu, 3),
            "loadgen_cpu_s": round(gen_cpu, 3),
            "closed_sockets": sum(ws.closed for ws in targets),
            # The collector's time in the window, all generations (0 when not served).
            "gc_ms": round(sum(gc1["seconds"]) * 1000 - sum(gc0["seconds"]) * 1000, 1),
            "gc_collections": [
                b - a for a, b in zip(gc0["collections"], gc1["collections"], strict=True)
            ],
            "t0": t0,
            "t_end": time.time(),
        }
        self.out["events"].append(result)
        self.last_published = published
        return result

    def _trip(self, payload: bytes, sub: str) -> dict[str, Any]:
        msg = orjson.loads(payload)
        if not self.graphql:
            trip: dict[str, Any] = msg["trip"]
            return {"id": trip["id"], "status": trip["status"], "rating": trip["rating"]}
        if msg.get("type") != "next" or msg.get("id") != sub or msg["payload"].get("errors"):
            return {}
        field = "tripUpdated" if sub == "u" else "tripRequested"
        node: dict[str, Any] = msg["payload"]["data"][field]
        return node

    async def mutate(self, query: str, variables: dict[str, Any], token: str, field: str) -> Any:
        return gql_data(await self.http.graphql(query, variables, token), field)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        await self.tap.start()
        steps: list[int] = cfg["steps"]
        rq, driver, rider = cfg["requester_token"], cfg["driver_token"], cfg["rider_token"]

        async def request_and_cancel_later() -> dict[str, Any]:
            trip = await self.mutate(
                REQUEST,
                {"input": {"pickUpAddress": "Bench pick-up 1", "dropOffAddress": "Bench 2"}},
                rq,
                "requestTrip",
            )
            self.pending_cancel = trip["id"]
            return dict(trip)

        async def cancel() -> None:
            await self.mutate(CANCEL, {"id": self.pending_cancel}, rq, "cancelTrip")

        # Warm-up: a few sockets on both streams, one request and its cancellation, so
        # imports, caches and pools are warm before the baseline RSS is read.
        warm = await self.open(8, first_index=10**6)
        await self.join(warm, "u")
        await self.join(warm, "r")
        await request_and_cancel_later()
        await asyncio.sleep(0.3)
        await cancel()
        for ws in warm:
            ws.close()
        await asyncio.sleep(0.5)
        await settle(self.pid)
        self.memory("baseline", 0, 0)

        transitions: list[tuple[str, dict[str, Any], str, str, Callable[[Any], bool]]] = [
            (
                UPDATE,
                {"status": "IN_PROGRESS"},
                driver,
                "updateTripStatus",
                lambda t: t.get("status") == "IN_PROGRESS",
            ),
            (
                UPDATE,
                {"status": "COMPLETED"},
                driver,
                "updateTripStatus",
                lambda t: t.get("status") == "COMPLETED",
            ),
            (RATE, {}, rider, "rateTrip", lambda t: t.get("rating") == 5),
        ]
        # tripUpdated: grow to each N, then one committed change on the trip.
        for n, (query, extra, token, field, check) in zip(steps, transitions, strict=False):
            new = await self.open(n - len(self.sockets), first_index=len(self.sockets))
            self.sockets += new
            self.memory(f"{n} sockets, acked", n, n - len(new))
            await self.join(new, "u")
            self.memory(f"{n} sockets, tripUpdated", n, n)

            async def change(
                q: str = query, x: dict[str, Any] = extra, tk: str = token, f: str = field
            ) -> dict[str, Any]:
                return dict(await self.mutate(q, {"id": self.trip, **x}, tk, f))

            await self.event("u", n, change, check)
        template = self.last_published

        # tripRequested: the same sockets, subscribed in growing prefixes.
        joined = 0
        for n in steps:
            await self.join(self.sockets[joined:n], "r")
            joined = n
            self.memory(
                f"{n} of {len(self.sockets)} with tripRequested too",
                len(self.sockets),
                len(self.sockets) + n,
            )
            target: dict[str, Any] = {}

            async def request(target: dict[str, Any] = target) -> dict[str, Any]:
                trip = await request_and_cancel_later()
                target["id"] = trip["id"]
                return trip

            await self.event("r", n, request, _same_id(target))
            await cancel()

        # Sustained delivery: N subscribers of tripUpdated, events at rising rates.
        keep = cfg["sustained"]["n"]
        for ws in self.sockets[keep:]:
            ws.close()
        self.sockets = self.sockets[:keep]
        await asyncio.sleep(1)
        await settle(self.pid)
        if template is not None:
            await self.sustained(template, keep)
        for ws in self.sockets:
            ws.close()
        await self.http.close()
        await self.tap.stop()
        return self.out

    async def profile(self) -> dict[str, Any]:
        """N sockets on both streams; py-spy records the server while it fans out
        synthetic events (copies of real ones, published to Redis) one at a time."""
        cfg = self.cfg
        n, count = cfg["profile"]["n"], cfg["profile"]["events"]
        await self.tap.start()
        self.sockets = await self.open(n)
        await self.join(self.sockets, "u")
        await self.join(self.sockets, "r")
        driver, rq = cfg["driver_token"], cfg["requester_token"]

        async def update() -> dict[str, Any]:
            variables = {"id": self.trip, "status": "IN_PROGRESS"}
            return dict(await self.mutate(UPDATE, variables, driver, "updateTripStatus"))

        await self.event("u", n, update, lambda t: t.get("status") == "IN_PROGRESS")
        templates = {"u": self.last_published}
        where = {"input": {"pickUpAddress": "Bench pick-up 1", "dropOffAddress": "Bench 2"}}
        requested: dict[str, Any] = {}

        async def request() -> dict[str, Any]:
            requested.update(await self.mutate(REQUEST, where, rq, "requestTrip"))
            return requested

        await self.event("r", n, request, lambda t: t.get("id") == requested["id"])
        templates["r"] = self.last_published
        await self.mutate(CANCEL, {"id": requested["id"]}, rq, "cancelTrip")
        self.out["events"].clear()

        # A full collection now, so that one triggered by the growing heap of the set-up
        # does not land in the profile (the run reports the collector's share per event).
        await self.gc(collect=True)
        await settle(self.pid)
        redis = aioredis.Redis.from_url(cfg["redis_url"])
        spy = await asyncio.create_subprocess_exec(
            *(cfg["profile"]["py_spy"], "record", "--pid", str(self.pid), "--format", "raw"),
            *("--rate", str(cfg["profile"]["rate"]), "--output", cfg["profile"]["output"]),
            *(["--native"] if cfg["profile"].get("native") else []),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(2)  # attached
        started = time.time()
        cpu0 = cpu_seconds(self.pid)
        for k in range(count):
            sub = "u" if k % 2 == 0 else "r"
            template = templates[sub]
            mark = f"#s{k}#"
            trip = {
                **template["trip"],
                "pick_up_address": template["trip"]["pick_up_address"] + mark,
            }
            channel = self.trip_channel if sub == "u" else self.pool_channel

            async def publish(
                trip: dict[str, Any] = trip, template: Any = template, channel: str = channel
            ) -> dict[str, Any]:
                event = {**template, "trip": trip, "at": time.time()}
                await redis.publish(channel, orjson.dumps(event))
                return trip

            await self.event(sub, n, publish, _marked(mark))
        busy = cpu_seconds(self.pid) - cpu0
        wall = time.time() - started
        spy.send_signal(signal.SIGINT)
        _, err = await spy.communicate()
        await redis.aclose()
        for ws in self.sockets:
            ws.close()
        await self.http.close()
        await self.tap.stop()
        self.out.update(
            {
                "n": n,
                "count": count,
                "server_cpu_s": round(busy, 2),
                "wall_s": round(wall, 2),
                "py_spy_stderr": err.decode(errors="replace")[-2000:],
            }
        )
        return self.out

    async def sustained(self, template: dict[str, Any], n: int) -> None:
        cfg = self.cfg["sustained"]
        redis = aioredis.Redis.from_url(self.cfg["redis_url"])
        loop = asyncio.get_running_loop()
        base = template["trip"]["pick_up_address"]
        seq = 0
        try:
            for rate in cfg["rates"]:
                published: dict[int, float] = {}
                latencies: list[float] = []
                last = [0.0]
                sink = _latency_sink(published, latencies, last)
                for ws in self.sockets:
                    ws.sink = sink
                await settle(self.pid)
                cpu0, gen0 = cpu_seconds(self.pid), time.process_time()
                count = max(1, round(rate * cfg["seconds"]))
                start = loop.time()
                t_first = time.time()
                for k in range(count):
                    delay = start + k / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    seq += 1
                    trip = {**template["trip"], "pick_up_address": f"{base}#s{seq}#"}
                    at = time.time()
                    published[seq] = at
                    event = {**template, "trip": trip, "at": at}
                    await redis.publish(self.trip_channel, orjson.dumps(event))
                t_end = time.time()
                while True:  # drain: until nothing arrived for a second
                    await asyncio.sleep(0.25)
                    if time.time() - max(last[0], t_end) > 1 or time.time() - t_end > 30:
                        break
                cpu = cpu_seconds(self.pid) - cpu0
                gen = time.process_time() - gen0
                for ws in self.sockets:
                    ws.sink = None
                delivered = len(latencies)
                # Publishing nominally spans count/rate seconds; a backlog stretches it.
                span = max(last[0], t_first + count / rate) - t_first
                row = {
                    "rate": rate,
                    "n": n,
                    "events": count,
                    "expected": count * n,
                    "delivered": delivered,
                    "delivered_per_s": round(delivered / span) if span > 0 else None,
                    "server_cpu_s": round(cpu, 2),
                    "cpu_s_per_1000": round(cpu / delivered * 1000, 3) if delivered else None,
                    "loadgen_cpu_s": round(gen, 2),
                    "span_s": round(span, 2),
                    **summary(latencies),
                }
                # Stale states are dropped by design (newest wins), so under overload
                # p99 may stay bounded while most messages are skipped: stop then too.
                row["saturated"] = delivered < 0.5 * count * n
                self.out["sustained"].append(row)
                if row["p99_ms"] is None or row["p99_ms"] > 1000 or row["saturated"]:
                    break
        finally:
            await redis.aclose()


def _same_id(target: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda trip: trip.get("id") == target["id"]


def _marked(mark: str) -> Callable[[dict[str, Any]], bool]:
    return lambda trip: mark in trip.get("pickUpAddress", "")


def _latency_sink(
    published: dict[int, float], latencies: list[float], last: list[float]
) -> Callable[[WS, float, bytes], None]:
    """Receipt time minus publish time of each message carrying a `#s<seq>#` mark."""

    def sink(ws: WS, now: float, payload: bytes) -> None:
        m = SEQ.search(payload)
        if m is not None:
            latencies.append(now - published[int(m.group(1))])
            last[0] = now

    return sink


# -- HTTP ------------------------------------------------------------------------------


async def http_load(cfg: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` keep-alive clients, each sending its next request on the answer."""
    method, path, token = cfg["method"], cfg["path"], cfg["token"]
    body = orjson.dumps({"query": TRIPS}) if method == "POST" else b""
    headers = {"Authorization": f"Bearer {token}"}
    sample = await HTTP(cfg["port"]).request(method, path, body, headers)
    latencies: list[float] = []
    errors = {"count": 0}
    state = {"measuring": False, "stop": False}

    async def client() -> None:
        conn = HTTP(cfg["port"])
        while not state["stop"]:
            t = time.perf_counter()
            status, data = await conn.request(method, path, body, headers)
            if state["measuring"]:
                latencies.append(time.perf_counter() - t)
                if status != 200 or b'"errors"' in data:
                    errors["count"] += 1
        await conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(cfg["concurrency"])]
    await asyncio.sleep(cfg["warmup_s"])
    state["measuring"] = True
    cpu0, gen0, t0 = cpu_seconds(cfg["pid"]), time.process_time(), time.perf_counter()
    await asyncio.sleep(cfg["seconds"])
    state["measuring"] = False
    elapsed = time.perf_counter() - t0
    cpu, gen = cpu_seconds(cfg["pid"]) - cpu0, time.process_time() - gen0
    state["stop"] = True
    await asyncio.gather(*tasks)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "errors": errors["count"],
        "server_cpu_share": round(cpu / elapsed, 2),
        "loadgen_cpu_share": round(gen / elapsed, 2),
        "sample_status": sample[0],
        "sample": orjson.loads(sample[1]),
        **summary(latencies),
    }


# -- accept race -----------------------------------------------------------------------


async def race(cfg: dict[str, Any]) -> dict[str, Any]:
    """Each driver tries the trips in its own random order until it wins one."""
    ports: list[int] = cfg["ports"]
    trips: list[str] = cfg["trip_ids"]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    wins: dict[str, str] = {}
    go = asyncio.Event()

    async def driver(i: int, token: str) -> None:
        conn = HTTP(ports[i % len(ports)])
        order = list(trips)
        random.Random(i).shuffle(order)
        await conn.request("GET", "/healthz")  # connected before the start
        await go.wait()
        for trip in order:
            t = time.perf_counter()
            result = await conn.graphql(ACCEPT, {"id": trip}, token)
            latencies.append(time.perf_counter() - t)
            code = error_code(result)
            if code is None:
                wins[token] = result["data"]["acceptTrip"]["id"]
                break
            codes[code] = codes.get(code, 0) + 1
        await conn.close()

    tasks = [asyncio.create_task(driver(i, tk)) for i, tk in enumerate(cfg["driver_tokens"])]
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return {
        "drivers": len(cfg["driver_tokens"]),
        "trips": len(trips),
        "processes": len(ports),
        "attempts": len(latencies),
        "accepted": len(wins),
        "distinct_trips_won": len(set(wins.values())),
        "error_codes": codes,
        "other_errors": sum(v for k, v in codes.items() if k != "CONFLICT"),
        "wall_s": round(time.perf_counter() - t0, 2),
        **summary(latencies),
    }


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    scenario = cfg["scenario"]
    if scenario == "fanout":
        result = await Fanout(cfg).run()
    elif scenario == "profile":
        result = await Fanout(cfg).profile()
    elif scenario == "http":
        result = await http_load(cfg)
    elif scenario == "race":
        result = await race(cfg)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    return result


def main(config: str, out: str, log: str) -> None:
    """Output and errors go to `log`: the orchestrator prints its tail on failure."""
    with open(log, "w", buffering=1) as stream:
        sys.stdout = sys.stderr = stream
        try:
            raise_open_files()
            cfg = orjson.loads(Path(config).read_bytes())
            Path(out).write_bytes(orjson.dumps(uvloop.run(run(cfg))))
        except BaseException:  # noqa: BLE001 - logged for the orchestrator, then exit 1
            traceback.print_exc()
            raise SystemExit(1) from None


if __name__ == "__main__":
    main(*sys.argv[1:4])
