"""Real processes for the cluster tests: taxi servers (`python -m taxi.cli serve`, the
production entry point) and a private redis-server that a test may kill and restart.

Every process writes to a log file under the test's tmp dir; a failure to start quotes
its tail. Processes are always stopped by the context managers that started them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.backends import SESSION_PREFIX
from tests.live import free_port, http_to
from tests.wait import START, eventually

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "cluster-secret-" + "y" * 40
T = TypeVar("T")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class Proc:
    """A subprocess with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str], *, group: bool = False
    ) -> None:
        """`group`: the process leads its own process group, and signals go to the whole
        group (`make` and the commands it runs)."""
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.group = group
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.group,
            )

    def _signal(self, popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self.group:
            os.killpg(popen.pid, sig)  # the group this test started, and only it
        else:
            popen.send_signal(sig)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """SIGTERM (graceful) or SIGKILL (a crash); waits, and kills what lingers."""
        if self.popen is None:
            return
        popen, self.popen = self.popen, None
        if popen.poll() is None:
            self._signal(popen, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(popen, signal.SIGKILL)
            popen.wait(timeout=timeout)

    def failure(self, what: str) -> AssertionError:
        return AssertionError(f"{self.name}: {what}\n--- {self.log} ---\n{_tail(self.log)}")

    async def until(
        self, probe: Callable[[], Awaitable[T]], what: str, done: Callable[[T], bool] = bool
    ) -> T:
        """`eventually(probe)` within START; fails with this process's log tail."""
        try:
            return await eventually(probe, done, within=START, what=what)
        except AssertionError as exc:
            raise self.failure(str(exc)) from None


class RedisServer:
    """A private redis-server (no persistence), restartable on the same port."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = Proc("redis", argv, log_dir / "redis.log", dict(os.environ))
        self.started_at = 0.0

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    async def start(self) -> None:
        self.proc.start()
        self.started_at = time.monotonic()

        async def pong() -> bool:
            if not self.proc.running:
                raise self.proc.failure("exited while starting")
            return await asyncio.to_thread(self._pong)

        await self.proc.until(pong, "no PONG")

    async def crash(self) -> None:
        await asyncio.to_thread(self.proc.stop, kill=True)


@asynccontextmanager
async def redis_server(log_dir: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(log_dir)
    try:
        await redis.start()
        yield redis
    finally:
        await asyncio.to_thread(redis.proc.stop)


class TaxiServer:
    def __init__(self, name: str, proc: Proc, port: int) -> None:
        self.name = name
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/graphql"
        self.http = http_to(self.url)
        self.redis = ""  # the Redis (or cluster) URL it runs on, for tests that look
        self.sharded = False  # on a Redis Cluster (sharded pub/sub)

    async def health(self) -> httpx.Response:
        return await self.http.get("/healthz")

    async def wait_health(self, status: int) -> dict[str, Any]:
        """Polls /healthz until it answers `status`; returns that answer's body."""

        async def answer() -> tuple[int, str]:
            if not self.proc.running:
                raise self.proc.failure("exited")
            try:
                response = await self.health()
            except httpx.TransportError as exc:
                return 0, repr(exc)
            return response.status_code, response.text

        _, text = await self.proc.until(
            answer, f"/healthz never answered {status}", lambda got: got[0] == status
        )
        body: dict[str, Any] = json.loads(text)
        return body


def server_env(
    *, database_url: str, redis_url: str = "", redis_cluster_url: str = ""
) -> dict[str, str]:
    """The environment of a `taxi` process a test starts: this one's, with the test's
    database, Redis (never the cluster CI exports for the cluster tests, unless asked)
    and secret, and this session's key prefix."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "REDIS_CLUSTER_URL"}}
    if redis_url:
        env["REDIS_URL"] = redis_url
    if redis_cluster_url:
        env["REDIS_CLUSTER_URL"] = redis_cluster_url
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=JWT_SECRET,
        TAXI_ENV="test",
        PASSWORD_HASHING="fast",
        PYTHONUNBUFFERED="1",
        # Tests sign many users up from one address (the limit is tested elsewhere).
        SIGNUP_MAX_PER_HOUR="1000000",
        LOGIN_MAX_PER_ADDRESS="1000000",
        TRIP_REQUESTS_PER_10_MIN="1000000",
        # Keys and channels under this test session's prefix (the default, `taxi`, is a
        # developer's server's: its sign-up counts would be ours).
        CHANNEL_PREFIX=SESSION_PREFIX,
    )
    return env


@asynccontextmanager
async def taxi_servers(
    names: list[str],
    *,
    database_url: str,
    redis_url: str = "",
    redis_cluster_url: str = "",
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> AsyncIterator[list[TaxiServer]]:
    """Server processes sharing one database, one Redis (or Redis Cluster) and one JWT
    secret; yields once every one of them answers /healthz with 200. `extra_env` is
    added to their environment."""
    env = server_env(
        database_url=database_url, redis_url=redis_url, redis_cluster_url=redis_cluster_url
    )
    env.update(extra_env or {})
    servers: list[TaxiServer] = []
    try:
        for name in names:
            port = free_port()
            argv = [sys.executable, "-m", "taxi.cli", "serve", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--log-level", log_level]
            proc_env = {**env, "MEDIA_ROOT": str(log_dir / f"media-{name}")}
            proc = Proc(name, argv, log_dir / f"server-{name}.log", proc_env)
            server = TaxiServer(name, proc, port)
            server.redis, server.sharded = redis_cluster_url or redis_url, bool(redis_cluster_url)
            servers.append(server)
            proc.start()
        await asyncio.gather(*(server.wait_health(200) for server in servers))
        yield servers
    finally:
        for server in servers:
            await server.http.aclose()
        await asyncio.gather(*(asyncio.to_thread(server.proc.stop) for server in servers))
