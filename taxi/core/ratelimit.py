"""Attempt limits (log-in per username, sign-up per client address): a fixed window per
key, in Redis when configured (shared by every process), else in process.

An attempt is counted BEFORE the work it guards (the password hash): of 60 log-ins that
arrive at once, only the first `max_attempts` are checked, whatever their outcome."""

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
# The in-process table drops expired windows once it holds this many keys.
_PRUNE_AT = 10_000
# DECR only a live window: on an expired key it would create -1 with no expiry.
_REFUND = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end"


class Limiter(Protocol):
    async def allow(self, key: str) -> bool:
        """Count one attempt for `key`; False when it is over the limit."""
        ...

    async def reset(self, key: str) -> None: ...

    async def refund(self, key: str) -> None:
        """Take back one attempt whose guarded work never ran (a database outage)."""
        ...


class MemoryLimiter:
    def __init__(self, *, max_attempts: int, window: int) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (started, attempts)

    async def allow(self, key: str) -> bool:
        # No await between the read and the write: atomic within the event loop.
        now = time.monotonic()
        if len(self._windows) >= _PRUNE_AT:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self.window:
            started, count = now, 0
        self._windows[key] = (started, count + 1)
        return count + 1 <= self.max_attempts

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def refund(self, key: str) -> None:
        if (window := self._windows.get(key)) is not None and window[1] > 0:
            self._windows[key] = (window[0], window[1] - 1)


class RedisLimiter:
    """INCR and EXPIRE NX in one MULTI/EXEC: the count and its window are set together,
    atomically for every process. Redis being down must not lock everyone out, so
    errors fail open (and are logged). On a Redis Cluster each command touches one key,
    so the transaction and the refund script stay in one slot."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str,
        max_attempts: int,
        window: int,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_attempts = max_attempts
        self.window = window

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def allow(self, key: str) -> bool:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(self._key(key))
                pipe.expire(self._key(key), self.window, nx=True)
                count, _ = await pipe.execute()
        except _DOWN:
            log.warning("limiter %s: redis unavailable, failing open", self.prefix)
            return True
        return int(count) <= self.max_attempts

    async def reset(self, key: str) -> None:
        try:
            await self.client.delete(self._key(key))
        except _DOWN:
            log.warning("limiter %s: redis unavailable, reset skipped", self.prefix)

    async def refund(self, key: str) -> None:
        try:
            await self.client.eval(_REFUND, 1, self._key(key))
        except _DOWN:
            log.warning("limiter %s: redis unavailable, refund skipped", self.prefix)
