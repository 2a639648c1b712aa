"""The rush-hour baseline: a bare WebSocket endpoint that does, per message, only what a
position report must (GEOADD + PUBLISH on Redis) and answers; no GraphQL, no auth.

Done the way the server does it (taxi/domain/reports.py): the messages of one event-loop
pass wait together and go to Redis in ONE pipeline (every GEOADD and PUBLISH of the
pass), so the ceiling it sets is the stack's, not one round trip per message's."""

from __future__ import annotations

import asyncio
import os

import orjson
from redis import asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

POOL_SIZE = 100  # Redis connections, as the taxi server's pool
MAX_BATCH = 500  # messages per pipeline at most, as the server's reports per script call


class PerTick:
    """GEOADD + PUBLISH of every message of one loop pass in one pipeline."""

    def __init__(self, redis: aioredis.Redis, key: str, channel: str) -> None:
        self.redis, self.key, self.channel = redis, key, channel
        self.waiting: list[tuple[str, str, float, float, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def write(self, member: str, text: str, lon: float, lat: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((member, text, lon, lat, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush())
        await future

    async def flush(self) -> None:
        await asyncio.sleep(0)  # let this pass's messages join
        while self.waiting:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.geoadd(self.key, [v for m, _, lon, lat, _ in batch for v in (lon, lat, m)])
                for _, text, _, _, _ in batch:
                    pipe.publish(self.channel, text)
                await pipe.execute()
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)


def create_bare_app() -> Starlette:
    # A pool that waits for one of its connections instead of raising past 100 in flight.
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], max_connections=POOL_SIZE, timeout=None
    )
    redis = aioredis.Redis(connection_pool=pool)
    prefix = os.environ.get("CHANNEL_PREFIX", "bare")
    writes = PerTick(redis, f"{{{prefix}:bare}}:geo", f"{prefix}:bare")

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def bare(ws: WebSocket) -> None:
        await ws.accept()
        member = str(id(ws))
        try:
            while True:
                text = await ws.receive_text()
                p = orjson.loads(text)
                await writes.write(member, text, p["longitude"], p["latitude"])
                await ws.send_text('{"ok":true}')
        except WebSocketDisconnect:
            return

    return Starlette(routes=[Route("/healthz", healthz), WebSocketRoute("/bare", bare)])
