"""The rush-hour baseline: a bare WebSocket endpoint that does, per message, only what a
position report must (GEOADD + PUBLISH on Redis) and answers; no GraphQL, no auth."""

from __future__ import annotations

import os

import orjson
from redis import asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

POOL_SIZE = 100  # Redis connections, as redis-py's default pool (the taxi server's)


def create_bare_app() -> Starlette:
    # redis-py 8's default pool raises MaxConnectionsError past 100 commands in flight,
    # which ended the handlers (and their sockets) of the 11,000-socket run: these wait
    # for one of the 100 connections instead.
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], max_connections=POOL_SIZE, timeout=None
    )
    redis = aioredis.Redis(connection_pool=pool)
    prefix = os.environ.get("CHANNEL_PREFIX", "bare")
    key, channel = f"{{{prefix}:bare}}:geo", f"{prefix}:bare"

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def bare(ws: WebSocket) -> None:
        await ws.accept()
        member = str(id(ws))
        try:
            while True:
                text = await ws.receive_text()
                p = orjson.loads(text)
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.geoadd(key, (p["longitude"], p["latitude"], member))
                    pipe.publish(channel, text)
                    await pipe.execute()
                await ws.send_text('{"ok":true}')
        except WebSocketDisconnect:
            return

    return Starlette(routes=[Route("/healthz", healthz), WebSocketRoute("/bare", bare)])
