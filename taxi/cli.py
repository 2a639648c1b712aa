"""`taxi serve | migrate | createsuperuser | print-schema`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from taxi.core.config import Settings, SettingsError
from taxi.core.logs import configure_logging


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    # Workers are separate processes: they read these and configure themselves.
    os.environ.setdefault("LOG_JSON", "1")
    os.environ.setdefault("LOG_LEVEL", args.log_level)
    os.environ.setdefault("LOG_FORMAT", "json" if settings.json_logs else "text")
    os.environ.setdefault("GC_TUNING", "1")
    configure_logging(args.log_level, json=settings.json_logs)
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done; with
    # the default disposition the process then dies "killed by SIGTERM" (status 143),
    # which process managers report as a failure. A completed graceful stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Several workers: their metrics go through files that /metrics reads (taxi.core.metrics);
    # a fresh directory per serve, so a previous run's counters never leak in.
    own_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="taxi-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _run(args, settings, uvicorn)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _run(args: argparse.Namespace, settings: Settings, uvicorn: Any) -> None:
    # The protocols by name (taxi.transport.server's HTTP and WEBSOCKET), not imported: this
    # process only supervises the workers, and importing the transport would register this
    # process's own metrics (taxi.core.metrics) beside theirs.
    uvicorn.run(
        "taxi.main:create_app",
        log_config=None,  # ours: JSON or text lines with request ids (taxi.core.logs)
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        loop="uvloop",
        # httptools with a header size limit and a read deadline (taxi.transport.server).
        http="taxi.transport.server:GuardedHttpToolsProtocol",
        server_header=False,
        # Frames are small JSON; compressing each one costs more CPU than it saves.
        ws_per_message_deflate=False,
        ws_max_size=settings.max_ws_message_bytes,
        # Closes open WebSockets with 1001 Going Away on shutdown (uvicorn's sends 1012).
        ws="taxi.transport.server:WebSocketProtocol",
        timeout_graceful_shutdown=10,
        # X-Forwarded-For only from TRUSTED_PROXIES (uvicorn trusts 127.0.0.1 otherwise).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or "",
    )


def _migrate(_args: argparse.Namespace, settings: Settings) -> None:
    from taxi.core.migrate import upgrade

    upgrade(settings)


async def create_superuser(settings: Settings, *, username: str, password: str) -> int:
    """The new staff user's id; BadUserInput when the name is taken or breaks the rules."""
    from taxi.core.db import open_database
    from taxi.domain.services.staff import create_staff

    async with open_database(settings) as (_engine, sessions):
        user = await create_staff(
            db=sessions,
            username=username,
            password=password,
            fast_hashing=settings.password_hashing == "fast",
        )
    assert user.id is not None
    return user.id


def _createsuperuser(args: argparse.Namespace, settings: Settings) -> None:
    from taxi.domain.errors import BadUserInput
    from taxi.domain.services.staff import problems

    username = (args.username or input("Username: ")).strip()
    if args.password is not None:
        password = again = args.password
    else:
        # Asked twice, unechoed: a typo here would lock the only admin out.
        password = getpass.getpass("Password: ")
        again = getpass.getpass("Password (again): ")
    wrong = problems(username=username, password=password, again=again)
    if wrong:
        sys.exit("taxi: " + " ".join(wrong))
    try:
        user_id = asyncio.run(create_superuser(settings, username=username, password=password))
    except BadUserInput as exc:
        found = [m for messages in (exc.fields or {}).values() for m in messages]
        sys.exit(f"taxi: {username!r}: " + " ".join(found or [exc.message]))
    sys.stdout.write(
        f"Created staff user {username!r} (id {user_id}): sign in at /admin/ with that "
        "password. It is not a driver and gets no offers.\n"
    )


def _print_schema(_args: argparse.Namespace, _settings: Settings) -> None:
    from taxi.api.build import print_schema

    sys.stdout.write(print_schema())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="taxi")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=_migrate)
    su = sub.add_parser("createsuperuser", help="create a staff user")
    su.add_argument("--username", help="asked for when not given")
    su.add_argument("--password", help="for scripts; asked for twice when not given")
    su.set_defaults(func=_createsuperuser)
    sub.add_parser("print-schema", help="print the GraphQL schema").set_defaults(func=_print_schema)
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except SettingsError as exc:
        parser.exit(2, f"taxi: {exc}\n")
    configure_logging(getattr(args, "log_level", "info"), json=settings.json_logs)
    args.func(args, settings)


if __name__ == "__main__":
    main()
