"""The ASGI application: `create_app(settings)`; `uvicorn taxi.main:app` also works."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute

from taxi import broadcast as broadcast_mod
from taxi import db as db_mod
from taxi import dispatch, gcpolicy, metrics, pages, sockets, tracing
from taxi.admin import attach, mount_admin
from taxi.broadcast import RedisClient, open_broadcast, open_redis
from taxi.config import Settings
from taxi.context import Services
from taxi.events import Publisher
from taxi.live.endpoint import LiveEndpoint
from taxi.live.hub import Hub
from taxi.logs import RequestIdMiddleware, configure_logging, install_request_ids
from taxi.persisted import Documents, load_manifest
from taxi.photos import MediaFiles
from taxi.positions import MemoryPositions, PositionStore
from taxi.positions_redis import RedisPositions
from taxi.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from taxi.schema import build_schema
from taxi.sockets import SocketRegistry
from taxi.view import TaxiGraphQL

log = logging.getLogger("taxi")

SIGNUP_WINDOW = 3600  # SIGNUP_MAX_PER_HOUR


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Everything that connects somewhere, opened and closed together."""
    async with AsyncExitStack() as stack:
        engine, sessions = await stack.enter_async_context(db_mod.open_database(settings))
        metrics.instrument_engine(engine)
        broadcast = await stack.enter_async_context(open_broadcast(settings))
        login = (settings.login_max_failures, settings.login_failure_window)
        signup = (settings.signup_max_per_hour, SIGNUP_WINDOW)
        limiter: Limiter
        signups: Limiter
        positions: PositionStore
        client: RedisClient | None = None
        if settings.uses_redis:
            client = await stack.enter_async_context(open_redis(settings))
            prefix = settings.channel_prefix
            limiter = RedisLimiter(
                client, prefix=f"{prefix}:login", max_attempts=login[0], window=login[1]
            )
            signups = RedisLimiter(
                client, prefix=f"{prefix}:signup", max_attempts=signup[0], window=signup[1]
            )
            positions = RedisPositions(client, prefix=settings.channel_prefix)
        else:
            limiter = MemoryLimiter(max_attempts=login[0], window=login[1])
            signups = MemoryLimiter(max_attempts=signup[0], window=signup[1])
            positions = MemoryPositions()
        events = Publisher(broadcast, prefix=settings.channel_prefix)
        await stack.enter_async_context(
            dispatch.running(db=sessions, positions=positions, events=events, settings=settings)
        )
        yield Services(
            settings=settings,
            engine=engine,
            db=sessions,
            broadcast=broadcast,
            events=events,
            hub=Hub(
                broadcast,
                prefix=settings.channel_prefix,
                maxsize=settings.subscriber_queue_size,
                mask_internal=settings.production,
            ),
            limiter=limiter,
            signups=signups,
            sockets=SocketRegistry(max_per_user=settings.max_sockets_per_user),
            positions=positions,
            documents=Documents(
                mode=settings.persisted_documents,
                manifest=(
                    load_manifest(settings.persisted_documents_file)
                    if settings.persisted_documents_file
                    else None
                ),
                redis=client,
                prefix=settings.channel_prefix,
            ),
        )


async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    failed: dict[str, str] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            await asyncio.wait_for(probe, timeout=3)
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is "down"
            failed[name] = type(exc).__name__

    await asyncio.gather(
        check("database", db_mod.ping(services.engine)),
        check("broadcast", broadcast_mod.ping(services.broadcast)),
    )
    if failed:
        return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings | None = None, *, tracer_provider: Any = None) -> Starlette:
    """`tracer_provider`: an OpenTelemetry TracerProvider (tests pass one with an
    in-memory exporter); by default one from the OTEL_* variables, or none."""
    settings = settings or Settings()
    install_request_ids()
    if settings.log_json:
        configure_logging(settings.log_level, json=settings.json_logs)
    provider = tracer_provider if tracer_provider is not None else tracing.from_env()
    schema = build_schema(
        mask_internal=settings.production,
        introspection=settings.introspection,
        tracer=tracing.tracer(provider) if provider is not None else None,
    )
    graphql = TaxiGraphQL(
        schema,
        settings=settings,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        multipart_uploads_enabled=True,
    )
    live = LiveEndpoint(schema, settings=settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        traced = tracing.instrumented(provider) if provider is not None else nullcontext()
        with traced:
            async with metrics.flushing(), open_services(settings) as services:
                app.state.services = services
                if settings.gc_tuning:
                    gcpolicy.install()
                ending = asyncio.create_task(sockets.follow(services.hub, services.sockets))
                attach(admin, services)
                try:
                    yield
                finally:
                    ending.cancel()
                    with suppress(asyncio.CancelledError):
                        await ending
                    await live.close_sockets()
                    await services.hub.close()

    media = Path(settings.media_root)
    media.mkdir(parents=True, exist_ok=True)
    middleware = [Middleware(metrics.HttpMetricsMiddleware), Middleware(RequestIdMiddleware)]
    if provider is not None:
        middleware.insert(0, Middleware(tracing.HttpTracing, provider=provider))
    if settings.origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "Apollo-Require-Preflight"],
            )
        )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", live),
            Route("/healthz", healthz),
            Route("/metrics", metrics.endpoint),
            Mount("/media", MediaFiles(media), name="media"),
            *pages.routes(),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.settings = settings
    admin = mount_admin(app, settings)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn taxi.main:app` builds the app on first access, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
