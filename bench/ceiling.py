"""The baseline server: what this machine does with no GraphQL in the way.

`create_ceiling_app` is taxi's own app (so the benchmark's mutations commit and publish
exactly as in the server under test) with two bare routes in front:

- `WS /ceiling`: each text message the client sends is a channel name; the socket
  joins that channel and gets "ok". Each channel has ONE subscription to the
  same broadcast backend (Redis) and its pump writes every event's payload, as it
  came, to every socket of the channel: no parsing, no GraphQL, no per-socket task.
- `GET /bare/trips?first=20`: the rows of `trips(first: 20)` with rider and driver (and
  the driver's rating) in the shape the GraphQL response has, from one asyncpg query
  that does the SQL work taxi does (page, count, users, ratings grouped per driver).
  The bearer token is verified (signature and expiry) but the user is not loaded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import orjson
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from taxi.core.config import Settings
from taxi.domain import auth
from taxi.domain.errors import Unauthenticated
from taxi.domain.services.queries import encode_cursor
from taxi.main import create_app


class Fanout:
    """One broadcast subscription per channel; each event goes to every socket."""

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.sockets: dict[str, set[WebSocket]] = {}
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    async def join(self, channel: str, ws: WebSocket) -> None:
        async with self._lock:
            if channel not in self.pumps:
                ready = asyncio.Event()
                self.sockets[channel] = set()
                self.pumps[channel] = asyncio.create_task(self._pump(channel, ready))
                await ready.wait()
            self.sockets[channel].add(ws)

    def leave(self, channel: str, ws: WebSocket) -> None:
        self.sockets.get(channel, set()).discard(ws)

    async def _pump(self, channel: str, ready: asyncio.Event) -> None:
        async with self.broadcast.subscribe(channel) as subscriber:
            ready.set()
            async for event in subscriber:  # type: ignore[union-attr]
                if event is None:
                    continue
                for ws in list(self.sockets[channel]):
                    with suppress(Exception):
                        await ws.send_text(event.message)

    async def close(self) -> None:
        for task in self.pumps.values():
            task.cancel()
        for task in self.pumps.values():
            with suppress(asyncio.CancelledError):
                await task


TRIPS_SQL = """
WITH page AS (
    SELECT * FROM trip WHERE {where} ORDER BY created DESC, id DESC LIMIT $2
), ratings AS (
    SELECT driver_id, avg(rating)::float8 AS avg, count(rating) AS n FROM trip
    WHERE driver_id IN (SELECT driver_id FROM page)
      AND status = 'COMPLETED' AND rating IS NOT NULL
    GROUP BY driver_id
)
SELECT p.id, p.created, p.updated, p.pick_up_address, p.drop_off_address, p.status, p.rating,
       p.driver_latitude, p.driver_longitude, p.driver_heading, p.driver_located_at,
       r.id AS r_id, r.username AS r_username, r.first_name AS r_first_name,
       r.last_name AS r_last_name, r."group" AS r_group, r.photo AS r_photo,
       d.id AS d_id, d.username AS d_username, d.first_name AS d_first_name,
       d.last_name AS d_last_name, d."group" AS d_group, d.photo AS d_photo,
       dr.avg AS d_rating, dr.n AS d_ratings,
       (SELECT count(*) FROM trip WHERE {where}) AS total
FROM page p
LEFT JOIN "user" r ON r.id = p.rider_id
LEFT JOIN "user" d ON d.id = p.driver_id
LEFT JOIN ratings dr ON dr.driver_id = p.driver_id
ORDER BY p.created DESC, p.id DESC
"""
RIDER_SQL = TRIPS_SQL.format(where="rider_id = $1")
DRIVER_SQL = TRIPS_SQL.format(where="(status = 'REQUESTED' OR driver_id = $1)")


def _user(row: Any, p: str, rating: float | None) -> dict[str, Any] | None:
    if row[f"{p}_id"] is None:
        return None
    photo = row[f"{p}_photo"]
    return {
        "id": str(row[f"{p}_id"]),
        "username": row[f"{p}_username"],
        "firstName": row[f"{p}_first_name"],
        "lastName": row[f"{p}_last_name"],
        "group": row[f"{p}_group"].upper(),
        "photoUrl": f"/media/{photo}" if photo else None,
        "rating": rating if row[f"{p}_group"] == "driver" else None,
    }


def _node(row: Any) -> dict[str, Any]:
    located = row["driver_located_at"]
    location = None
    if row["status"] in ("STARTED", "IN_PROGRESS") and located is not None:
        location = {
            "latitude": row["driver_latitude"],
            "longitude": row["driver_longitude"],
            "heading": row["driver_heading"],
            "recordedAt": located,
        }
    return {
        "id": str(row["id"]),
        "created": row["created"],
        "updated": row["updated"],
        "pickUpAddress": row["pick_up_address"],
        "dropOffAddress": row["drop_off_address"],
        "status": row["status"],
        "rating": row["rating"],
        "rider": _user(row, "r", None),
        "driver": _user(row, "d", row["d_rating"] if (row["d_ratings"] or 0) >= 3 else None),
        "driverLocation": location,
    }


def create_ceiling_app(settings: Settings) -> Starlette:
    app = create_app(settings)
    state: dict[str, Any] = {}

    async def ceiling(ws: WebSocket) -> None:
        await ws.accept()
        fanout: Fanout = state["fanout"]
        joined: list[str] = []
        try:
            while True:
                channel = await ws.receive_text()
                await fanout.join(channel, ws)
                joined.append(channel)
                await ws.send_text("ok")
        except WebSocketDisconnect:
            pass
        finally:
            for channel in joined:
                fanout.leave(channel, ws)

    async def bare_trips(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        try:
            claims = auth.decode_token(
                auth.strip_bearer(header), settings=settings, token_type="access"
            )
        except Unauthenticated:
            return Response(b'{"errors":[{"message":"Unauthenticated"}]}', status_code=401)
        first = min(int(request.query_params.get("first", "20")), 100)
        sql = DRIVER_SQL if claims.get("group") == "driver" else RIDER_SQL
        pool: asyncpg.Pool = state["pool"]
        async with pool.acquire() as conn:
            rows = await conn.fetch(sql, int(claims["sub"]), first + 1)
        page = rows[:first]
        cursors = [encode_cursor(r["created"], r["id"]) for r in page]
        body = {
            "data": {
                "trips": {
                    "edges": [
                        {"cursor": c, "node": _node(r)} for c, r in zip(cursors, page, strict=True)
                    ],
                    "pageInfo": {
                        "hasNextPage": len(rows) > first,
                        "endCursor": cursors[-1] if cursors else None,
                    },
                    "totalCount": rows[0]["total"] if rows else 0,
                }
            }
        }
        return Response(orjson.dumps(body), media_type="application/json")

    app.router.routes[0:0] = [
        WebSocketRoute("/ceiling", ceiling),
        Route("/bare/trips", bare_trips),
    ]
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        async with inner(a), asyncpg.create_pool(dsn, min_size=2, max_size=10) as pool:
            state["pool"] = pool
            state["fanout"] = Fanout(a.state.services.broadcast)
            try:
                yield
            finally:
                await state["fanout"].close()

    app.router.lifespan_context = lifespan
    return app
