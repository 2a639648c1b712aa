"""All configuration, read once from the environment (see PROTOCOL.md's table)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./taxi.db"
# HS256 keys shorter than the hash output can be brute-forced offline from one token.
MIN_JWT_SECRET_BYTES = 32


class SettingsError(Exception):
    """The configuration cannot run the service (e.g. production without JWT_SECRET).

    Not a ValueError: pydantic would wrap that in a ValidationError, which `taxi serve`
    does not catch (a traceback instead of a one-line refusal)."""


def normalize_database_url(url: str) -> str:
    """Map the URLs that hosting platforms hand out to the async drivers we use."""
    for prefix in (
        "postgres://",
        "postgresql://",
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def local_secret(path: Path) -> str:
    """The development signing key in `path`, created (0600, never overwritten) when missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may be writing it right now: its content is complete once long enough.
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= MIN_JWT_SECRET_BYTES:
            return secret
        raise SettingsError(f"{path} holds no usable secret; delete it to get a new one") from None
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


class Settings(BaseSettings):
    # `.env` in the working directory fills in what the environment does not set
    # (.env.example lists the variables); real environment variables win.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    taxi_env: Literal["development", "production", "test"] = "development"
    database_url: str = ""
    redis_url: str | None = None
    # `redis://host:port,host:port,...`: a Redis Cluster for everything Redis does
    # (sharded pub/sub, counters, positions); wins over REDIS_URL.
    redis_cluster_url: str | None = None
    jwt_secret: str | None = Field(default=None, repr=False)
    access_token_ttl: int = Field(default=300, gt=0)
    refresh_token_ttl: int = Field(default=86400, gt=0)
    media_root: Path = Path("./media")
    allowed_origins: str | None = None
    graphiql: bool | None = None
    introspection: bool = True
    # The web app's map (/app/): where it starts, and optionally a tile server
    # (`https://tiles.example/{z}/{x}/{y}.png`); unset, the app draws its own streets.
    map_center: str = Field(default="52.5200,13.4050", pattern=r"^-?\d+(\.\d+)?,-?\d+(\.\d+)?$")
    tile_url: str | None = None

    # PG* fallback, used only when DATABASE_URL is unset.
    pghost: str | None = None
    pgport: int | None = None
    pguser: str | None = None
    pgpassword: str | None = Field(default=None, repr=False)
    pgdatabase: str | None = None

    # Limits (documented in README).
    max_upload_bytes: int = 5 * 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_ws_message_bytes: int = 64 * 1024
    login_max_failures: int = 5
    login_failure_window: int = 300
    # logIn attempts per client address per minute, whatever usernames (PROTOCOL.md).
    login_max_per_address: int = Field(default=30, gt=0)
    # Persisted documents: the shared store's bounds (oldest evicted first).
    persisted_max_documents: int = Field(default=10_000, gt=0)
    persisted_max_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    signup_max_per_hour: int = Field(default=20, gt=0)
    # Per rider (PROTOCOL.md "Abuse limits"): each request offers the trip to drivers.
    trip_requests_per_10_min: int = Field(default=10, gt=0)
    max_sockets_per_user: int = Field(default=20, gt=0)
    # Comma-separated proxy addresses whose X-Forwarded-For is believed (uvicorn's
    # forwarded_allow_ips); unset: none, the peer address is the client's.
    trusted_proxies: str | None = None
    ws_keepalive_seconds: float = 10.0
    ws_init_timeout_seconds: float = 3.0
    subscriber_queue_size: int = 64
    # Past this many seconds of queued work, new requestTrip/signUp/logIn/estimateFare
    # are turned away with retryAfter (taxi.core.overload).
    overload_queue_seconds: float = Field(default=2.0, gt=0)
    # Dispatch near the pick-up (PROTOCOL.md): waves of offers to the nearest drivers.
    dispatch_radius_meters: int = Field(default=3000, gt=0)
    dispatch_max_radius_meters: int = Field(default=12000, gt=0)
    dispatch_batch_size: int = Field(default=10, gt=0)
    dispatch_wave_seconds: float = Field(default=15.0, gt=0)
    position_ttl: float = Field(default=60.0, gt=0)
    # The ride's life (PROTOCOL.md "Fares and the ride's life"). Money in minor units.
    fare_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    fare_base: int = Field(default=250, ge=0)
    fare_per_km: int = Field(default=120, ge=0)
    fare_per_minute: int = Field(default=30, ge=0)
    fare_minimum: int = Field(default=700, ge=0)
    fare_surge_max: float = Field(default=3.0, ge=1.0)
    fare_quote_ttl: float = Field(default=300.0, gt=0)
    fare_no_show_fee: int = Field(default=500, ge=0)
    route_factor: float = Field(default=1.3, ge=1.0)
    city_speed_kmh: float = Field(default=25.0, gt=0)
    router_url: str | None = None
    # PROTOCOL.md: a router slower than 300 ms is not waited for (the estimate answers).
    router_timeout_seconds: float = Field(default=0.3, gt=0, le=5)
    dispatch_timeout_seconds: float = Field(default=180.0, gt=0)
    arrival_meters: float = Field(default=50.0, gt=0)
    no_show_seconds: float = Field(default=300.0, ge=0)
    # Every broadcast channel is `<prefix>:<name>`: deployments sharing a Redis stay apart.
    channel_prefix: str = Field(default="taxi", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Development only, when JWT_SECRET is unset: the signing key kept in this file (0600),
    # so saved tokens survive a restart.
    secret_file: Path = Path(".taxi-secret")
    # This process configures logging itself (taxi.core.logs); `taxi serve` turns it on, also for
    # its workers. LOG_FORMAT: `text` (readable lines) or `json`; unset, text in development.
    log_json: bool = False
    # The collector's policy for a long-running server (taxi.core.gcpolicy); `taxi serve` turns
    # it on, also for its workers.
    gc_tuning: bool = False
    log_format: Literal["json", "text"] | None = None
    log_level: str = "info"
    # Persisted documents (taxi.api.persisted): APQ, trusted documents only, or neither.
    persisted_documents: Literal["apq", "only", "off"] = "apq"
    persisted_documents_file: Path | None = None
    # "fast" trades hash strength for test speed; refused in production.
    password_hashing: Literal["default", "fast"] = "default"

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.database_url:
            if self.pgdatabase:
                auth = quote(self.pguser or "", safe="")
                if self.pgpassword:
                    auth += ":" + quote(self.pgpassword, safe="")
                host = self.pghost or "localhost"
                port = self.pgport or 5432
                at = f"{auth}@" if auth else ""
                self.database_url = f"postgresql+asyncpg://{at}{host}:{port}/{self.pgdatabase}"
            else:
                self.database_url = DEFAULT_DATABASE_URL
        self.database_url = normalize_database_url(self.database_url)
        if self.production and self.password_hashing != "default":
            raise SettingsError("PASSWORD_HASHING=fast is for tests only")
        if self.persisted_documents == "only" and self.persisted_documents_file is None:
            raise SettingsError("PERSISTED_DOCUMENTS=only needs PERSISTED_DOCUMENTS_FILE")
        if not self.jwt_secret:
            if self.production:
                raise SettingsError("JWT_SECRET must be set when TAXI_ENV=production")
            if self.taxi_env == "development":
                self.jwt_secret = local_secret(self.secret_file)
            else:
                # Tests: a random per-process secret.
                self.jwt_secret = secrets.token_urlsafe(48)
        if self.production and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise SettingsError(
                f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes when "
                "TAXI_ENV=production (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @property
    def json_logs(self) -> bool:
        if self.log_format is not None:
            return self.log_format == "json"
        return self.taxi_env != "development"

    @property
    def production(self) -> bool:
        return self.taxi_env == "production"

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.production

    @property
    def origins(self) -> list[str]:
        if not self.allowed_origins:
            return []
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def map_center_point(self) -> tuple[float, float]:
        latitude, longitude = self.map_center.split(",")
        return float(latitude), float(longitude)

    @property
    def uses_redis(self) -> bool:
        """Some Redis (one server or a cluster) holds the shared state."""
        return bool(self.redis_cluster_url or self.redis_url)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
