"""The rush hour's setup, with bounded concurrency and progress lines on stderr: the T
trips under way first (requested without a pick-up, so their offers go to the pool
before any driver listens: 1,000 such requests would otherwise be 10,000 frames each),
then the D drivers (socket, goOnline, tripRequested), then the riders who will request
during the measured window."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import orjson

from bench.gqlws import GqlSocket, Template, failure
from bench.net import WS, ws_connect
from bench.prepare import _sessions, _users, mint_token
from bench.rush_bare_load import Bare
from bench.rush_load import ACCEPT, FOLLOW, OFFERS, ONLINE, REQUEST, Car, Rush
from bench.rush_watch import Watch
from bench.rush_wheel import DRIVER_EVERY, TRIP_EVERY, Stats
from tests.gqlws import errors

CONCURRENCY = 200  # sockets opening (or operations awaited) at once
# Trips under way are set up by SQL-writing mutations: no more at once than the server's
# database pool holds (10 + 20 overflow), or they wait for it and time out.
TRIP_CONCURRENCY = 20
TRIES = 3  # a socket refused, or a setup mutation SERVICE_UNAVAILABLE: tried again
PROGRESS_EVERY = 1000
SHED_TRIES = 30  # setup mutations shed with retryAfter: tried again after it

In = TypeVar("In")
Out = TypeVar("Out")


def say(message: str) -> None:
    sys.stderr.write(f"[rush {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


async def bounded(
    label: str,
    items: Sequence[In],
    work: Callable[[In], Awaitable[Out]],
    limit: int = CONCURRENCY,
) -> list[Out]:
    """`work` on every item, `limit` at a time, in order; progress every 1,000."""
    gate = asyncio.Semaphore(limit)
    started, done = time.monotonic(), 0

    async def one(item: In) -> Out:
        nonlocal done
        async with gate:
            out = await work(item)
        done += 1
        if done % PROGRESS_EVERY == 0 or done == len(items):
            say(f"{label}: {done:,}/{len(items):,} ({time.monotonic() - started:.1f} s)")
        return out

    return await asyncio.gather(*(one(item) for item in items))


async def open_sock(port: int, token: str, stats: Stats) -> GqlSocket:
    # A socket the server closed before its ack (4408: the init deadline passed while
    # thousands of others connected) reconnects, as a phone would; counted, reported.
    for _ in range(TRIES - 1):
        try:
            return await GqlSocket.open(port, token)
        except (ConnectionError, TimeoutError):
            stats.error("reconnect at open")
    return await GqlSocket.open(port, token)


async def _data(sock: GqlSocket, tpl: Template, variables: Any, what: str, stats: Stats) -> Any:
    """The mutation's answer; tried again while the server is SERVICE_UNAVAILABLE (its
    database pool exhausted by the setup's own load)."""
    for _ in range(SHED_TRIES):
        msg = await sock.call(tpl, variables)
        if (code := failure(msg)) is None:
            return msg["payload"]["data"][what]
        if code != "SERVICE_UNAVAILABLE":
            break
        stats.error(f"setup {what} retried: {code}")
        # Shed while the setup itself overloads the server (PROTOCOL.md "Overload"): a
        # client waits the retryAfter it was given, as a phone would.
        first = (errors(msg) or [{}])[0]
        wait = (first.get("extensions") or {}).get("retryAfter", 1)
        await asyncio.sleep(float(wait))
    raise RuntimeError(f"setup: {what} failed: {code}")


async def set_up(
    rush: Rush, port: int, tokens: dict[str, list[str]], stats: Stats, watch: Watch
) -> tuple[list[GqlSocket], list[GqlSocket]]:
    """Every socket open and in its role; returns (all sockets, the requesters)."""
    socks: list[GqlSocket] = []

    async def trip(pair: tuple[str, str]) -> None:
        driver = await open_sock(port, pair[0], stats)
        rider = await open_sock(port, pair[1], stats)
        socks.extend((driver, rider))
        where = {"i": {"pickUpAddress": "a", "dropOffAddress": "b"}}
        trip = (await _data(rider, REQUEST, where, "requestTrip", stats))["id"]
        await _data(driver, ACCEPT, {"id": trip}, "acceptTrip", stats)
        car = Car.anywhere(driver, trip)
        rider.subscribe(FOLLOW, orjson.dumps({"t": trip}), (rush.on_location, car))
        rush.wheel.add(car, TRIP_EVERY)

    async def driver(token: str) -> None:
        sock = await open_sock(port, token, stats)
        socks.append(sock)
        car = Car.anywhere(sock)
        position = {"latitude": car.lat, "longitude": car.lon}
        await _data(sock, ONLINE, {"p": position}, "goOnline", stats)
        sock.subscribe(OFFERS, b"{}", (rush.on_offer, sock))
        rush.wheel.add(car, DRIVER_EVERY)

    async def rider(token: str) -> GqlSocket:
        sock = await open_sock(port, token, stats)
        socks.append(sock)
        return sock

    pairs = list(zip(tokens["busy"], tokens["riders"], strict=True))
    await bounded("trips under way", pairs, trip, TRIP_CONCURRENCY)
    watch.mark("trips under way")
    await bounded("drivers online", tokens["drivers"], driver)
    watch.mark("drivers online")
    requesters = await bounded("riders who will request", tokens["requesters"], rider)
    watch.mark("set up")
    return socks, requesters


async def open_bare(bare: Bare, port: int, drivers: int, trips: int) -> list[WS]:
    """drivers + trips sockets on bench.rush_bare, reporting every 4 s and 2 s."""

    async def one(i: int) -> WS:
        ws = await ws_connect(port, "/bare", i)
        bare.car(ws, DRIVER_EVERY if i < drivers else TRIP_EVERY)
        return ws

    return await bounded("bare sockets", range(drivers + trips), one)


async def seed(dsn: str, secret: str, opts: Any) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        tokens: dict[str, list[str]] = {}
        # The window's requests, twice the rate in the overload phase, then the recovery's.
        later = 2 * opts.overload_seconds + opts.recovery_seconds
        count = int(opts.rate * (opts.warmup + opts.seconds + later)) + 10
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
