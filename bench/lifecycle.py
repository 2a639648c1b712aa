"""`python -m bench.lifecycle [--trips N --drivers D]`: what each step of a ride costs the
server (issue 21: requestTrip with its first wave, acceptTrip and the status steps each
take a bounded, measured cost). One server process on core 0 (PostgreSQL + Redis,
production settings, as bench.rush starts it), this generator on core 1.

D drivers online in a 6 x 6 km part of the city (each request finds a full first wave of
DISPATCH_BATCH_SIZE), listening to `tripRequested` over their own graphql-transport-ws
sockets; N riders. Then phases of N operations each, 8 in flight at a time, the server
left to settle (its background work done: publishes, fan-out) before the next phase:
`updatePosition` (for comparison: at this rate a report is not batched with thousands),
`requestTrip` with a pick-up (the market, the first wave, its offers to ten sockets),
`acceptTrip` by a driver it was offered to, `updateTripStatus` IN_PROGRESS, COMPLETED.
Server CPU per operation from /proc over the phase (10 ms ticks: N=400 resolves 25 µs),
and each operation's round trip."""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop

from bench.gqlws import GqlSocket, failure, template
from bench.prepare import (
    ROOT,
    Database,
    Server,
    _sessions,
    _users,
    mint_token,
    plain_dsn,
    taxi_environment,
)
from bench.proc import as_generator, cpu_seconds, settle
from bench.profile import spy_on
from bench.rush_load import ACCEPT, ONLINE, REQUEST, STEP, UPDATE
from bench.rush_setup import bounded, say
from bench.rush_wheel import CENTER, LON_SCALE, M_PER_DEG, pct

AREA = 3_000.0  # metres from the centre: a 6 x 6 km part of the city
IN_FLIGHT = 8
OFFERS = template("subscription { tripRequested { id } }")


def near() -> dict[str, float]:
    dy, dx = (random.uniform(-AREA, AREA) for _ in range(2))
    return {"latitude": CENTER[0] + dy / M_PER_DEG, "longitude": CENTER[1] + dx / LON_SCALE}


class Ride:
    """One rider's request and who takes it."""

    def __init__(self, rider: GqlSocket) -> None:
        self.rider = rider
        self.trip: str | None = None
        self.driver: GqlSocket | None = None


async def call(sock: GqlSocket, tpl: Any, variables: Any, what: str, times: list[float]) -> Any:
    started = time.perf_counter()
    msg = await sock.call(tpl, variables)
    times.append(time.perf_counter() - started)
    if (code := failure(msg)) is not None:
        raise RuntimeError(f"{what}: {code}")
    return msg["payload"]["data"][what]


async def phase(
    server: Server,
    name: str,
    items: list[Any],
    work: Callable[[Any], Awaitable[None]],
    profile: Path | None,
) -> dict[str, Any]:
    """`work` on every item, IN_FLIGHT at a time; the server's CPU until it settled
    (`profile`: py-spy's raw stacks of the phase go to PROFILE-<name>.txt)."""
    await settle(server.pid)
    out = None if profile is None else profile.with_name(f"{profile.name}-{name}.txt")
    spy = await spy_on(server.pid, out, 600)
    before, started = cpu_seconds(server.pid), time.monotonic()
    await bounded(name, items, work, IN_FLIGHT)
    await settle(server.pid)
    cpu = cpu_seconds(server.pid) - before
    row = {"n": len(items), "cpu_us": 1e6 * cpu / len(items), "wall_s": time.monotonic() - started}
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    return row


async def run(opts: argparse.Namespace, server: Server, tokens: dict[str, list[str]]) -> list[Any]:
    drivers = await bounded("drivers", tokens["drivers"], lambda t: GqlSocket.open(server.port, t))
    riders = await bounded("riders", tokens["riders"], lambda t: GqlSocket.open(server.port, t))
    offered: dict[str, list[GqlSocket]] = {}
    setup: list[float] = []

    def on_offer(sock: GqlSocket, msg: dict[str, Any]) -> None:
        offered.setdefault(msg["payload"]["data"]["tripRequested"]["id"], []).append(sock)

    async def online(sock: GqlSocket) -> None:
        await call(sock, ONLINE, {"p": near()}, "goOnline", setup)
        sock.subscribe(OFFERS, b"{}", (on_offer, sock))

    await bounded("online", drivers, online, IN_FLIGHT)
    rides = [Ride(r) for r in riders]
    free = set(drivers)
    times: dict[str, list[float]] = {}

    def timed(name: str) -> list[float]:
        return times.setdefault(name, [])

    async def report(sock: GqlSocket) -> None:
        await call(sock, UPDATE, {"p": near()}, "updatePosition", timed("updatePosition"))

    async def request(ride: Ride) -> None:
        where = {"pickUpAddress": "a", "dropOffAddress": "b", "pickUp": near()}
        ride.trip = (
            await call(ride.rider, REQUEST, {"i": where}, "requestTrip", timed("requestTrip"))
        )["id"]

    async def accept(ride: Ride) -> None:
        assert ride.trip is not None
        ride.driver = next((d for d in offered.get(ride.trip, ()) if d in free), None)
        if ride.driver is None:
            raise RuntimeError(f"trip {ride.trip}: no free driver was offered it")
        free.discard(ride.driver)
        await call(ride.driver, ACCEPT, {"id": ride.trip}, "acceptTrip", timed("acceptTrip"))

    def step(status: str) -> Callable[[Ride], Awaitable[None]]:
        async def one(ride: Ride) -> None:
            assert ride.driver is not None
            variables = {"id": ride.trip, "s": status}
            await call(ride.driver, STEP, variables, "updateTripStatus", timed(status))

        return one

    rows = []
    for name, items, work in (
        ("updatePosition", drivers[: len(rides)], report),
        ("requestTrip", rides, request),
        ("acceptTrip", rides, accept),
        ("IN_PROGRESS", rides, step("IN_PROGRESS")),
        ("COMPLETED", rides, step("COMPLETED")),
    ):
        row = await phase(server, name, items, work, opts.profile)
        waits = times[name]
        row |= {"operation": name, "p50_ms": pct(waits, 0.5), "p99_ms": pct(waits, 0.99)}
        if name == "requestTrip":
            row["offers_per_request"] = sum(map(len, offered.values())) / len(rides)
        rows.append(row)
    for sock in drivers + riders:
        sock.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| operation | n | server CPU per operation | round trip p50 / p99 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['operation']} | {r['n']} | {r['cpu_us']:,.0f} µs "
            f"| {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    tmp = as_generator("taxi-lifecycle-")
    say(f"lifecycle: {opts.trips} rides, {opts.drivers} drivers; logs in {tmp}")
    db = Database(plain_dsn(opts.database_url))
    await db.create(ROOT)
    secret = secrets.token_urlsafe(40)
    env = taxi_environment(
        db,
        redis_url=opts.redis_url,
        secret=secret,
        prefix=f"life-{secrets.token_hex(4)}",
        media=tmp / "media",
        GC_TUNING="1",
    )
    server = Server("taxi", 0, env, tmp / "taxi.log")
    try:
        conn = await asyncpg.connect(db.dsn)
        tokens: dict[str, list[str]] = {}
        try:
            for name, group, n in (
                ("drivers", "driver", opts.drivers),
                ("riders", "rider", opts.trips),
            ):
                users = await _users(conn, f"life_{name}", group, n)
                sids = await _sessions(conn, [i for i, _ in users])
                tokens[name] = [
                    mint_token(secret, i, u, group, sid)
                    for (i, u), sid in zip(users, sids, strict=True)
                ]
        finally:
            await conn.close()
        await server.start()
        rows = await run(opts, server, tokens)
    finally:
        await server.stop()
        await db.drop()
    return {"options": {k: str(v) for k, v in vars(opts).items()}, "lifecycle": rows}


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    parser.add_argument("--trips", type=int, default=400)
    parser.add_argument("--drivers", type=int, default=2_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks: PROFILE-<phase>.txt")
    return parser.parse_args(argv)


if __name__ == "__main__":
    opts = options()
    result = uvloop.run(main(opts))
    sys.stdout.write(table(result["lifecycle"]))
    if opts.out:
        opts.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
