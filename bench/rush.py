"""Rush hour (issue 11): `python -m bench.rush [--drivers D --trips T --rate R --seconds S]`,
also the last phase of `python -m bench`.

A 20 x 20 km city. One server process on core 0 (PostgreSQL + Redis, production
settings), this generator on core 1. D online drivers each send `updatePosition` every
4 s over their own graphql-transport-ws socket and listen to `tripRequested`; T trips
under way, each driver reporting every 2 s and each rider subscribed to
`driverLocation`; R requests a second with pick-ups spread over the city, each accepted
by the first offered driver after 1-3 s and driven to completion. Measured: the
updatePosition round trip, position -> rider frame, request -> first-wave offer frames
(p50/p99 per 30 s window, to show whether latency stays flat), server CPU per position
report; then the same sockets against a bare endpoint doing only GEOADD + PUBLISH per
message (`bench.rush_bare`), for the ratio."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.prepare import ROOT, Database, Server, _sessions, _users, mint_token, plain_dsn
from bench.proc import cpu_seconds, raise_open_files
from bench.profile import summarize

CENTER = (52.52, 13.40)
HALF_SIDE = 10_000.0  # metres: a 20 x 20 km city
M_PER_DEG = 111_195.0
DRIVER_EVERY, TRIP_EVERY = 4.0, 2.0
ACCEPT_AFTER = (1.0, 3.0)
LEG = 3.0  # seconds from accept to IN_PROGRESS and from there to COMPLETED
WINDOW = 30.0
WAVE_ONE = 5.0  # an offer within this of its request belongs to the first wave
CONNECT_CONCURRENCY = 200
OPEN_TRIES = 3

UPDATE = "mutation U($p: LocationInput!) { updatePosition(position: $p) { availability } }"
ONLINE = "mutation O($p: LocationInput!) { goOnline(position: $p) { availability } }"
OFFERS = "subscription { tripRequested { id pickUpAddress } }"
FOLLOW = "subscription F($t: ID!) { driverLocation(tripId: $t) { latitude } }"
REQUEST = "mutation R($i: RequestTripInput!) { requestTrip(input: $i) { id } }"
ACCEPT = "mutation A($id: ID!) { acceptTrip(id: $id) { id } }"
STEP = "mutation S($id: ID!, $s: TripStatus!) { updateTripStatus(id: $id, status: $s) { id } }"


def spot() -> dict[str, float]:
    dy, dx = (random.uniform(-HALF_SIDE, HALF_SIDE) for _ in range(2))
    lon_scale = M_PER_DEG * math.cos(math.radians(CENTER[0]))
    return {"latitude": CENTER[0] + dy / M_PER_DEG, "longitude": CENTER[1] + dx / lon_scale}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Stats:
    def __init__(self) -> None:
        self.samples: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
        self.started = time.monotonic()
        self.measuring = False
        self.reports = 0
        self.errors: defaultdict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        if self.measuring:
            self.samples[name].append((time.monotonic() - self.started, seconds))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, points in self.samples.items():
            values = [v for _, v in points]
            windows = defaultdict(list)
            for at, v in points:
                windows[int(at // WINDOW)].append(v)
            out[name] = {
                "n": len(values),
                "p50_ms": pct(values, 0.5),
                "p99_ms": pct(values, 0.99),
                "p99_ms_per_window": [pct(windows[k], 0.99) for k in sorted(windows)],
            }
        return out


class Sock:
    """One graphql-transport-ws socket: operations by id, frames to callbacks."""

    ids = itertools.count()

    def __init__(self, ws: ClientConnection, stats: Stats) -> None:
        self.ws, self.stats = ws, stats
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.streams: dict[str, Any] = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, stats: Stats) -> Sock:
        # A socket the server closed before its ack (4408: the init deadline passed while
        # thousands of others connected) reconnects, as a phone would; counted, reported.
        for _ in range(OPEN_TRIES - 1):
            try:
                return await cls._open(url, token, stats)
            except ConnectionClosed:
                stats.errors["reconnect at open"] += 1
        return await cls._open(url, token, stats)

    @classmethod
    async def _open(cls, url: str, token: str, stats: Stats) -> Sock:
        ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None)
        await ws.send(
            orjson.dumps({"type": "connection_init", "payload": {"authToken": token}}).decode()
        )
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        return cls(ws, stats)

    async def _read(self) -> None:
        async for frame in self.ws:
            msg = orjson.loads(frame)
            kind, op = msg["type"], msg.get("id")
            if kind == "ping":
                await self.ws.send('{"type":"pong"}')
            elif op in self.streams and kind == "next":
                self.streams[op](msg["payload"])
            elif op in self.waiting and kind in ("next", "error"):
                self.waiting.pop(op).set_result(msg)

    async def call(self, query: str, variables: dict[str, Any]) -> Any:
        op = str(next(self.ids))
        future = self.waiting[op] = asyncio.get_running_loop().create_future()
        payload = {"query": query, "variables": variables}
        try:
            await self.ws.send(
                orjson.dumps({"id": op, "type": "subscribe", "payload": payload}).decode()
            )
        except ConnectionClosed:
            return None  # the run is over: its sockets are closing
        msg = await future
        if msg["type"] == "error" or msg["payload"].get("errors"):
            errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
            code = errors[0].get("extensions", {}).get("code", errors[0].get("message"))
            self.stats.errors[f"{query.split()[1]} {code}"] += 1
            return None
        return msg["payload"]["data"]

    async def stream(self, query: str, variables: dict[str, Any], on: Any) -> None:
        op = str(next(self.ids))
        self.streams[op] = on
        payload = {"query": query, "variables": variables}
        await self.ws.send(
            orjson.dumps({"id": op, "type": "subscribe", "payload": payload}).decode()
        )


class Rush:
    def __init__(self, opts: argparse.Namespace, url: str, stats: Stats) -> None:
        self.opts, self.url, self.stats = opts, url, stats
        self.claimed: set[str] = set()
        self.sent: dict[tuple[str, float], float] = {}  # (trip, latitude) -> sent at
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        """A task kept until it ends (the loop holds only weak references)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drive(self, sock: Sock, every: float, trip: str | None = None) -> None:
        where = spot()
        await asyncio.sleep(random.uniform(0, every))
        while not self.stop.is_set():
            where = {k: v + random.uniform(-2e-4, 2e-4) for k, v in where.items()}
            started = time.monotonic()
            if trip is not None:
                self.sent[(trip, round(where["latitude"], 9))] = started
            await sock.call(UPDATE, {"p": where})
            self.stats.add("updatePosition_rtt", time.monotonic() - started)
            self.stats.reports += self.stats.measuring
            await asyncio.sleep(every - (time.monotonic() - started) % every)

    def on_offer(self, sock: Sock) -> Any:
        def on(payload: dict[str, Any]) -> None:
            offer = payload["data"]["tripRequested"]
            trip, address = offer["id"], offer["pickUpAddress"]
            if not address.startswith("rush "):
                return
            # The request's send time travels in its address: offers may beat the answer.
            sent = float(address.split()[1])
            if time.monotonic() - sent < WAVE_ONE:
                self.stats.add("request_to_offer", time.monotonic() - sent)
            if trip not in self.claimed:
                self.claimed.add(trip)
                self.spawn(self.take(sock, trip))

        return on

    async def take(self, sock: Sock, trip: str) -> None:
        await asyncio.sleep(random.uniform(*ACCEPT_AFTER))
        if await sock.call(ACCEPT, {"id": trip}) is None:
            return
        for status in ("IN_PROGRESS", "COMPLETED"):
            await asyncio.sleep(LEG)
            await sock.call(STEP, {"id": trip, "s": status})

    def on_location(self, trip: str) -> Any:
        def on(payload: dict[str, Any]) -> None:
            lat = payload["data"]["driverLocation"]["latitude"]
            sent = self.sent.pop((trip, round(lat, 9)), None)
            if sent is not None:
                self.stats.add("position_to_rider", time.monotonic() - sent)

        return on

    async def requests(self, riders: list[Sock]) -> None:
        pending = iter(riders)
        while not self.stop.is_set():
            rider = next(pending, None)
            if rider is None:
                break
            where = {
                "pickUpAddress": f"rush {time.monotonic():.6f}",
                "dropOffAddress": "Hour",
                "pickUp": spot(),
            }
            self.spawn(rider.call(REQUEST, {"i": where}))
            await asyncio.sleep(1 / self.opts.rate)


async def gather_limited(coros: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(c: Any) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def run_load(
    opts: argparse.Namespace, url: str, tokens: dict[str, list[str]], server_pid: int
) -> dict[str, Any]:
    stats = Stats()
    rush = Rush(opts, url, stats)
    drivers = await gather_limited([Sock.open(url, t, stats) for t in tokens["drivers"]])
    for sock in drivers:
        await sock.call(ONLINE, {"p": spot()})
        await sock.stream(OFFERS, {}, rush.on_offer(sock))
    busy = await gather_limited([Sock.open(url, t, stats) for t in tokens["busy"]])
    riders = await gather_limited([Sock.open(url, t, stats) for t in tokens["riders"]])
    trips: list[str] = []
    for rider, driver in zip(riders, busy, strict=True):
        trip = (await rider.call(REQUEST, {"i": {"pickUpAddress": "a", "dropOffAddress": "b"}}))[
            "requestTrip"
        ]["id"]
        await driver.call(ACCEPT, {"id": trip})
        await rider.stream(FOLLOW, {"t": trip}, rush.on_location(trip))
        trips.append(trip)
    requesters = await gather_limited([Sock.open(url, t, stats) for t in tokens["requesters"]])
    tasks = [asyncio.create_task(rush.drive(s, DRIVER_EVERY)) for s in drivers]
    tasks += [
        asyncio.create_task(rush.drive(s, TRIP_EVERY, t)) for s, t in zip(busy, trips, strict=True)
    ]
    await asyncio.sleep(opts.warmup)
    spy = await _spy(opts, server_pid)
    stats.measuring, stats.started = True, time.monotonic()
    cpu0 = cpu_seconds(server_pid)
    tasks.append(asyncio.create_task(rush.requests(requesters)))
    await asyncio.sleep(opts.seconds)
    cpu = cpu_seconds(server_pid) - cpu0
    profile = await _spied(spy, opts)
    stats.measuring = False
    rush.stop.set()
    for task in [*tasks, *rush.tasks]:
        task.cancel()
    for sock in [*drivers, *busy, *riders, *requesters]:
        sock.reader.cancel()
        await sock.ws.close()
    return {
        **stats.summary(),
        "position_reports": stats.reports,
        "server_cpu_seconds": cpu,
        "cpu_us_per_report": cpu / max(stats.reports, 1) * 1e6,
        "errors": dict(stats.errors),
        **({"profile": profile} if profile else {}),
    }


async def _spy(opts: argparse.Namespace, pid: int) -> asyncio.subprocess.Process | None:
    """py-spy on the server for the measured window (--profile FILE: raw stacks)."""
    if opts.profile is None:
        return None
    py_spy = Path(sys.executable).parent / "py-spy"
    spy = await asyncio.create_subprocess_exec(
        *(str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"),
        *("--duration", str(int(opts.seconds)), "--output", str(opts.profile)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1)  # attached
    return spy


async def _spied(spy: asyncio.subprocess.Process | None, opts: argparse.Namespace) -> Any:
    if spy is None:
        return None
    await spy.wait()
    return summarize(opts.profile, top=30)


async def run_bare(opts: argparse.Namespace, port: int, server_pid: int) -> dict[str, Any]:
    """The same socket count and message rate against bench.rush_bare."""
    stats = Stats()
    url = f"ws://127.0.0.1:{port}/bare"
    socks = await gather_limited(
        [connect(url, max_queue=None) for _ in range(opts.drivers + opts.trips)]
    )
    sent = 0

    async def drive(ws: ClientConnection, every: float) -> None:
        nonlocal sent
        await asyncio.sleep(random.uniform(0, every))
        while True:
            started = time.monotonic()
            await ws.send(orjson.dumps(spot()).decode())
            await ws.recv()
            stats.add("bare_rtt", time.monotonic() - started)
            sent += stats.measuring
            await asyncio.sleep(every - (time.monotonic() - started) % every)

    tasks = [
        asyncio.create_task(drive(ws, DRIVER_EVERY if i < opts.drivers else TRIP_EVERY))
        for i, ws in enumerate(socks)
    ]
    await asyncio.sleep(opts.warmup)
    stats.measuring, stats.started = True, time.monotonic()
    cpu0 = cpu_seconds(server_pid)
    await asyncio.sleep(min(opts.seconds, 60))
    cpu = cpu_seconds(server_pid) - cpu0
    for task in tasks:
        task.cancel()
    for ws in socks:
        await ws.close()
    return {**stats.summary(), "messages": sent, "cpu_us_per_message": cpu / max(sent, 1) * 1e6}


async def seed(dsn: str, secret: str, opts: argparse.Namespace) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        tokens: dict[str, list[str]] = {}
        count = int(opts.rate * opts.seconds) + 10
        for name, group, n in (
            ("drivers", "driver", opts.drivers),
            ("busy", "driver", opts.trips),
            ("riders", "rider", opts.trips),
            ("requesters", "rider", count),
        ):
            users = await _users(conn, f"rush_{name}", group, n)
            sids = await _sessions(conn, [i for i, _ in users])
            tokens[name] = [
                mint_token(secret, i, u, group, sid)
                for (i, u), sid in zip(users, sids, strict=True)
            ]
        return tokens
    finally:
        await conn.close()


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    raise_open_files()
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="taxi-rush-"))
    db = Database(plain_dsn(opts.database_url))
    await db.create(ROOT)
    secret, prefix = secrets.token_urlsafe(40), f"rush-{secrets.token_hex(4)}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DATABASE_URL": db.sqlalchemy_url,
        "REDIS_URL": opts.redis_url,
        "JWT_SECRET": secret,
        "TAXI_ENV": "production",
        "CHANNEL_PREFIX": prefix,
        "BENCH_CHANNEL_PREFIX": prefix,
        "MEDIA_ROOT": str(tmp / "media"),
        "MAX_SOCKETS_PER_USER": "1000",
    }
    results: dict[str, Any] = {"options": {k: str(v) for k, v in vars(opts).items()}}
    server = Server("taxi", 0, env, tmp / "taxi.log")
    try:
        tokens = await seed(db.dsn, secret, opts)
        await server.start()
        url = f"ws://127.0.0.1:{server.port}/graphql"
        results["taxi"] = await run_load(opts, url, tokens, server.pid)
    finally:
        await server.stop()
        await db.drop()
    bare = Server("rush_bare", 0, env, tmp / "bare.log")
    try:
        await bare.start()
        results["bare"] = await run_bare(opts, bare.port, bare.pid)
    finally:
        await bare.stop()
    taxi_us = results["taxi"]["cpu_us_per_report"]
    results["ratio_to_bare"] = taxi_us / max(results["bare"]["cpu_us_per_message"], 1e-9)
    return results


GOALS = {
    "updatePosition_rtt": ("updatePosition round trip p99", 50.0),
    "position_to_rider": ("position -> rider's driverLocation frame p99", 100.0),
    "request_to_offer": ("request -> first-wave offer frames p99", 100.0),
}


def table(results: dict[str, Any]) -> str:
    """The rush-hour result against the issue's goals, as a Markdown table."""
    o, taxi = results["options"], results["taxi"]
    lines = [
        f"\nRush hour: D={o['drivers']} drivers, T={o['trips']} trips under way, "
        f"R={o['rate']}/s requests, {o['seconds']} s measured\n",
        "| measure | goal | p50 | p99 | p99 per 30 s window |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, (name, goal) in GOALS.items():
        m = taxi.get(key) or {}
        windows = ", ".join(f"{w:.0f}" for w in m.get("p99_ms_per_window", []) if w is not None)
        p50, p99 = m.get("p50_ms"), m.get("p99_ms")
        lines.append(
            f"| {name} (n={m.get('n', 0)}) | ≤ {goal:.0f} ms | "
            f"{'-' if p50 is None else f'{p50:.1f} ms'} | "
            f"{'-' if p99 is None else f'{p99:.1f} ms'} | {windows} |"
        )
    lines.append(
        f"| server CPU per position report | ≤ 100 µs | {taxi['cpu_us_per_report']:.0f} µs | | "
        f"{taxi['position_reports']} reports |"
    )
    bare = results["bare"]
    lines.append(
        f"| bare GEOADD+PUBLISH endpoint, CPU per message | | "
        f"{bare['cpu_us_per_message']:.0f} µs | | ratio {results['ratio_to_bare']:.1f}x |"
    )
    if taxi.get("errors"):
        lines.append(f"\nerrors: {taxi['errors']}")
    return "\n".join(lines) + "\n"


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rush", description=__doc__)
    parser.add_argument("--drivers", type=int, default=10_000)
    parser.add_argument("--trips", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=180.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=10.0)
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
    results = uvloop.run(main(opts))
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    if opts.out:
        opts.out.write_text(text)
    sys.stdout.write(text + "\n" + table(results))
    return results


if __name__ == "__main__":
    run()
