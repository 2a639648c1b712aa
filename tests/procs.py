"""Real processes for the cluster tests: taxi servers (`python -m taxi.cli serve`, the
production entry point), a private redis-server that a test may kill and restart, and
a small graphql-transport-ws client over a real socket.

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
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "cluster-secret-" + "y" * 40
START_TIMEOUT = 30.0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class Proc:
    """A subprocess with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """SIGTERM (graceful) or SIGKILL (a crash); waits, and kills what lingers."""
        if self.popen is None:
            return
        popen, self.popen = self.popen, None
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)

    def failure(self, what: str) -> AssertionError:
        return AssertionError(f"{self.name}: {what}\n--- {self.log} ---\n{_tail(self.log)}")


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
        deadline = time.monotonic() + START_TIMEOUT
        while not await asyncio.to_thread(self._pong):
            if not self.proc.running:
                raise self.proc.failure("exited while starting")
            if time.monotonic() > deadline:
                raise self.proc.failure("no PONG")
            await asyncio.sleep(0.05)

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
        self.http = httpx.AsyncClient(base_url=self.url, timeout=20)
        self.redis = ""  # the Redis (or cluster) URL it runs on, for tests that look
        self.sharded = False  # on a Redis Cluster (sharded pub/sub)

    async def health(self) -> httpx.Response:
        return await self.http.get("/healthz")

    async def wait_health(self, status: int, within: float = START_TIMEOUT) -> dict[str, Any]:
        """Polls /healthz until it answers `status`; returns that answer's body."""
        deadline = time.monotonic() + within
        last = "no answer"
        while True:
            if not self.proc.running:
                raise self.proc.failure("exited")
            try:
                response = await self.health()
                if response.status_code == status:
                    body: dict[str, Any] = response.json()
                    return body
                last = f"{response.status_code} {response.text}"
            except httpx.TransportError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise self.proc.failure(f"/healthz never answered {status}; last: {last}")
            await asyncio.sleep(0.1)


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
        SIGNUP_MAX_PER_HOUR="1000000",
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


class GqlSocket:
    """graphql-transport-ws over a real socket. Messages are buffered per operation id,
    so operations on one socket can be read in any order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._inbox: defaultdict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._reading = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, ws_url: str, token: str) -> AsyncIterator[GqlSocket]:
        async with connect(
            ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authToken": token}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            assert ack["type"] == "connection_ack", ack
            yield cls(ws)

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))

    async def message(self, op_id: str, within: float) -> dict[str, Any]:
        """The next message for `op_id` (answering pings meanwhile)."""
        async with asyncio.timeout(within):
            while not self._inbox[op_id]:
                async with self._reading:  # one reader at a time; it files for all
                    if self._inbox[op_id]:
                        break
                    # Cancelling recv() (on timeout) loses no message.
                    message = json.loads(await self.ws.recv())
                kind = message["type"]
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif kind != "pong":
                    self._inbox[message["id"]].append(message)
        return self._inbox[op_id].popleft()

    async def next(self, op_id: str, within: float = 15.0) -> dict[str, Any]:
        """The data of the next `next` message for `op_id`; anything else fails."""
        message = await self.message(op_id, within)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    async def until(
        self,
        op_id: str,
        wanted: Callable[[dict[str, Any]], bool],
        *,
        skip: Callable[[dict[str, Any]], bool],
        within: float = 15.0,
    ) -> dict[str, Any]:
        """The first data for `op_id` that is `wanted`, passing over data that `skip`
        allows (e.g. events of other tests on a shared Redis); anything else fails."""
        async with asyncio.timeout(within):
            while True:
                data = await self.next(op_id, within=within)
                if wanted(data):
                    return data
                assert skip(data), f"unexpected on {op_id}: {data}"
