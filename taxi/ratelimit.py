"""Log-in failure counting per username: in Redis when configured, else in process."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

log = logging.getLogger(__name__)

# A cluster mid-failover may raise RedisClusterException, which is not a RedisError.
_DOWN = (RedisError, RedisClusterException, OSError)


class LoginLimiter(Protocol):
    async def blocked(self, username: str) -> bool: ...
    async def failed(self, username: str) -> None: ...
    async def reset(self, username: str) -> None: ...


def _key(username: str) -> str:
    return f"taxi:login-failures:{username.strip().lower()}"


class MemoryLoginLimiter:
    def __init__(self, *, max_failures: int, window: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, username: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        recent = [t for t in self._failures.get(_key(username), []) if t > cutoff]
        if recent:
            self._failures[_key(username)] = recent
        else:
            self._failures.pop(_key(username), None)
        return recent

    async def blocked(self, username: str) -> bool:
        return len(self._recent(username)) >= self.max_failures

    async def failed(self, username: str) -> None:
        self._failures.setdefault(_key(username), []).append(time.monotonic())
        self._recent(username)

    async def reset(self, username: str) -> None:
        self._failures.pop(_key(username), None)


class RedisLoginLimiter:
    """A fixed window per username shared by every process. Redis being down must not
    lock everyone out, so errors fail open (and are logged). On a cluster the counter
    is one key, so its INCR+EXPIRE transaction stays in one slot."""

    def __init__(
        self, client: aioredis.Redis | RedisCluster, *, max_failures: int, window: int
    ) -> None:
        self.client = client
        self.max_failures = max_failures
        self.window = window

    async def blocked(self, username: str) -> bool:
        try:
            value = await self.client.get(_key(username))
        except _DOWN:
            log.warning("login limiter: redis unavailable, failing open")
            return False
        # decode_responses=True: the value is `str`, never bytes.
        return value is not None and int(value) >= self.max_failures

    async def failed(self, username: str) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(_key(username))
                pipe.expire(_key(username), self.window, nx=True)
                await pipe.execute()
        except _DOWN:
            log.warning("login limiter: redis unavailable, failure not counted")

    async def reset(self, username: str) -> None:
        try:
            await self.client.delete(_key(username))
        except _DOWN:
            log.warning("login limiter: redis unavailable, reset skipped")
