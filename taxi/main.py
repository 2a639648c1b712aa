"""The ASGI application: `create_app(settings)`; `uvicorn taxi.main:app` also works."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import strawberry
from sqladmin import Admin
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from taxi.api.build import build_schema
from taxi.api.context import Services
from taxi.api.executor import Executor
from taxi.api.persisted import Documents, load_manifest
from taxi.api.schema.check import document_checker
from taxi.core import db as db_mod
from taxi.core import gcpolicy, metrics, overload, tracing
from taxi.core.backends import describe
from taxi.core.broadcast import RedisClient, open_broadcast, open_redis
from taxi.core.config import Settings
from taxi.core.logs import RequestIdMiddleware, configure_logging, install_request_ids
from taxi.core.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from taxi.core.tasks import background
from taxi.domain.events import Publisher
from taxi.domain.logins import ADDRESS_WINDOW, LoginLimits
from taxi.domain.positions import MemoryPositions, PositionStore
from taxi.domain.positions_redis import RedisPositions
from taxi.domain.reports import Reports
from taxi.domain.routes import Estimator, Router
from taxi.domain.services import dispatch
from taxi.transport import health, pages
from taxi.transport.admin import attach, mount_admin
from taxi.transport.http import TaxiGraphQL
from taxi.transport.live.endpoint import LiveEndpoint
from taxi.transport.live.hub import Hub
from taxi.transport.live.registry import SocketRegistry, follow
from taxi.transport.media import MediaFiles

log = logging.getLogger(__name__)

SIGNUP_WINDOW = 3600  # SIGNUP_MAX_PER_HOUR
TRIP_REQUEST_WINDOW = 600  # TRIP_REQUESTS_PER_10_MIN


@asynccontextmanager
async def open_services(
    settings: Settings, *, valid: Callable[[str], bool]
) -> AsyncIterator[Services]:
    """Everything that connects somewhere, opened and closed together. `valid`: whether
    a document validates against the schema (what persisted documents must pass)."""
    async with AsyncExitStack() as stack:
        engine, sessions = await stack.enter_async_context(db_mod.open_database(settings))
        metrics.instrument_engine(engine)
        broadcast = await stack.enter_async_context(open_broadcast(settings))
        client = await stack.enter_async_context(_maybe_redis(settings))
        estimator = Estimator.of(settings)
        arrival = settings.arrival_meters
        positions: PositionStore = (
            MemoryPositions(estimator=estimator, arrival_meters=arrival)
            if client is None
            else RedisPositions(
                client,
                prefix=settings.channel_prefix,
                estimator=estimator,
                arrival_meters=arrival,
            )
        )
        router = Router(
            url=settings.router_url,
            estimator=estimator,
            timeout=settings.router_timeout_seconds,
        )
        stack.push_async_callback(router.aclose)
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
            logins=LoginLimits(
                by_name=_limiter(
                    settings,
                    client,
                    "login",
                    max_attempts=settings.login_max_failures,
                    window=settings.login_failure_window,
                ),
                by_address=_limiter(
                    settings,
                    client,
                    "login-address",
                    max_attempts=settings.login_max_per_address,
                    window=ADDRESS_WINDOW,
                ),
            ),
            signups=_limiter(
                settings,
                client,
                "signup",
                max_attempts=settings.signup_max_per_hour,
                window=SIGNUP_WINDOW,
            ),
            trip_requests=_limiter(
                settings,
                client,
                "trips",
                max_attempts=settings.trip_requests_per_10_min,
                window=TRIP_REQUEST_WINDOW,
            ),
            positions=positions,
            reports=Reports(positions=positions, events=events),
            router=router,
            documents=_documents(settings, client, valid),
        )


@asynccontextmanager
async def _maybe_redis(settings: Settings) -> AsyncIterator[RedisClient | None]:
    """The shared Redis when one is configured; None means in-process state."""
    if not settings.uses_redis:
        yield None
        return
    async with open_redis(settings) as client:
        yield client


def _limiter(
    settings: Settings, client: RedisClient | None, name: str, *, max_attempts: int, window: int
) -> Limiter:
    if client is None:
        return MemoryLimiter(max_attempts=max_attempts, window=window)
    prefix = f"{settings.channel_prefix}:{name}"
    return RedisLimiter(client, prefix=prefix, max_attempts=max_attempts, window=window)


def _documents(
    settings: Settings, client: RedisClient | None, valid: Callable[[str], bool]
) -> Documents:
    path = settings.persisted_documents_file
    return Documents(
        mode=settings.persisted_documents,
        valid=valid,
        manifest=load_manifest(path) if path else None,
        redis=client,
        prefix=settings.channel_prefix,
        max_documents=settings.persisted_max_documents,
        max_bytes=settings.persisted_max_bytes,
    )


def create_app(settings: Settings | None = None, *, tracer_provider: Any = None) -> Starlette:
    """`tracer_provider`: an OpenTelemetry TracerProvider (tests pass one with an
    in-memory exporter); by default one from the OTEL_* variables, or none."""
    settings = settings or Settings()
    install_request_ids()
    if settings.log_json:
        configure_logging(settings.log_level, json=settings.json_logs)
    provider = tracer_provider if tracer_provider is not None else tracing.from_env()
    schema = build_schema()
    executor = Executor(
        schema,
        mask_internal=settings.production,
        introspection=settings.introspection,
        tracer=tracing.tracer(provider) if provider is not None else None,
    )
    live = LiveEndpoint(executor, settings=settings)
    valid = document_checker(schema, introspection=settings.introspection)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _running(app, settings, provider=provider, live=live, admin=admin, valid=valid):
            yield

    app = Starlette(
        routes=_routes(settings, schema, executor, live),
        middleware=_middleware(settings, provider),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.live = live
    app.state.backends = describe(settings)
    admin = mount_admin(app, settings)
    return app


@asynccontextmanager
async def _running(
    app: Starlette,
    settings: Settings,
    *,
    provider: Any,
    live: LiveEndpoint,
    admin: Admin,
    valid: Callable[[str], bool],
) -> AsyncIterator[None]:
    """The app's lifetime: the services open, and sockets of ended sessions closed; at
    the end, every socket closed (1001) before the hub stops."""
    traced = tracing.instrumented(provider) if provider is not None else nullcontext()
    with traced:
        async with (
            metrics.flushing(),
            overload.measuring(limit=settings.overload_queue_seconds),
            open_services(settings, valid=valid) as services,
            health.checking(settings, services.broadcast) as checker,
        ):
            app.state.services = services
            app.state.health = checker
            if settings.gc_tuning:
                gcpolicy.install()
            attach(admin, services)
            hub = Hub(
                services.broadcast,
                prefix=settings.channel_prefix,
                maxsize=settings.subscriber_queue_size,
                mask_internal=settings.production,
            )
            registry = SocketRegistry(max_per_user=settings.max_sockets_per_user)
            live.start(hub=hub, registry=registry)
            log.info("taxi is up: %s", app.state.backends.line())
            try:
                async with background(follow(hub, registry), name="taxi-sessions-follow"):
                    yield
            finally:
                await live.close_sockets()
                await hub.close()


def _routes(
    settings: Settings, schema: strawberry.Schema, executor: Executor, live: LiveEndpoint
) -> list[BaseRoute]:
    graphql = TaxiGraphQL(
        schema,
        settings=settings,
        executor=executor,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        multipart_uploads_enabled=True,
    )
    media = Path(settings.media_root)
    media.mkdir(parents=True, exist_ok=True)
    return [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", live),
        Route("/healthz", health.healthz),
        Route("/metrics", metrics.endpoint),
        Mount("/media", MediaFiles(media), name="media"),
        *pages.routes(),
    ]


def _middleware(settings: Settings, provider: Any) -> list[Middleware]:
    """Outermost first: tracing, metrics (and pending work), request ids, then CORS when
    origins are set."""
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
    return middleware


def __getattr__(name: str) -> Any:
    # `uvicorn taxi.main:app` builds the app on first access, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
