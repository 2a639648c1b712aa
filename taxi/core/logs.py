"""Logs: one JSON object per line in production (readable text lines in development), each
carrying the request or connection id.

Variables, tokens and passwords are never logged: operations are logged by name, type,
duration and outcome only."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("taxi_request_id", default=None)

log = logging.getLogger("taxi.operation")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_") and key != "request_id"
        ]
        if extras:
            line += "  " + " ".join(extras)
        if (rid := getattr(record, "request_id", None)) is not None:
            line += f"  [{rid[:8]}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def install_request_ids() -> None:
    """Stamp each record with the current request id when it is created: handlers may
    format it later, outside the request's context. Idempotent."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _Stamped):
        logging.setLogRecordFactory(_Stamped(factory))


class _Stamped:
    """A record factory that adds `request_id` to what `factory` makes (a class, so
    `install_request_ids` can tell it is already installed)."""

    def __init__(self, factory: Callable[..., logging.LogRecord]) -> None:
        self.factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.factory(*args, **kwargs)
        if (rid := request_id.get()) is not None:
            record.request_id = rid
        return record


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers go through the root handler too (same format, same ids).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, NoQueryStrings) for f in access.filters):
        access.addFilter(NoQueryStrings())


class NoQueryStrings(logging.Filter):
    """Access log lines without the query string: a GET query's variables (or a password
    sent there by mistake) never reach the logs. uvicorn's access record carries
    (client, method, path with query, http version, status) as its args."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], *args[3:])
        return True


class RequestIdMiddleware:
    """An id for every HTTP request and every WebSocket connection (X-Request-ID is
    honoured when a proxy sets one), in the logs and echoed on HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        # A socket's frames go straight to the server: wrapping `send` there would put an
        # extra call on every message to every subscriber, for a header it never sends.
        wrapped = send_with_id if scope["type"] == "http" else send
        try:
            await self.app(scope, receive, wrapped)
        finally:
            request_id.reset(token)


def operation_line(name: str | None, kind: str, seconds: float, codes: list[str]) -> None:
    """The one log line per operation (written by the executor, taxi/api/executor.py)."""
    log.info(
        "operation",
        extra={
            "operation": name or "anonymous",
            "type": kind,
            "duration_ms": round(seconds * 1000, 2),
            "outcome": "error" if codes else "ok",
            "codes": codes,
        },
    )


class Tally:
    """Operations too frequent for a line each (position reports: thousands a second,
    and an info line costs ~80 µs, as much as the report): counted per (name, type),
    and written as one line per name and type every `every` seconds, on the next
    operation after that. Keys are metric labels, so bounded."""

    __slots__ = ("_counts", "_since", "every")

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._counts: dict[tuple[str, str], list[float]] = {}
        self._since = time.monotonic()

    def add(self, name: str, kind: str, seconds: float) -> None:
        entry = self._counts.get((name, kind))
        if entry is None:
            entry = self._counts[(name, kind)] = [0, 0.0]
        entry[0] += 1
        entry[1] += seconds
        now = time.monotonic()
        if now - self._since >= self.every:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        for (name, kind), (count, total) in self._counts.items():
            log.info(
                "operations",
                extra={
                    "operation": name,
                    "type": kind,
                    "count": int(count),
                    "mean_ms": round(total / count * 1000, 3),
                    "outcome": "ok",
                },
            )
        self._counts.clear()
        self._since = time.monotonic() if now is None else now
