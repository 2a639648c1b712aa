"""A bounded store of texts by key: at most `max_entries` texts and `max_bytes` bytes,
the least recently used evicted first; in process (an LRU) or shared through Redis.

What it holds comes from clients (persisted documents, taxi/api/persisted.py), so no
client can grow it past its bounds: an attacker registering junk evicts only the
oldest entries, which their owners register again on their next request."""

from __future__ import annotations

import time
from collections import OrderedDict

from taxi.core.broadcast import RedisClient

# KEYS: texts (hash), order (sorted set: key -> last use), size (bytes held).
# ARGV: key, text, now, cutoff (unused since then: forgotten), max entries, max bytes,
# ttl (of the three keys).
_PUT = """
local texts, order, size = KEYS[1], KEYS[2], KEYS[3]
local function evict(key)
  redis.call('DECRBY', size, redis.call('HSTRLEN', texts, key))
  redis.call('HDEL', texts, key)
  redis.call('ZREM', order, key)
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', order, '-inf', ARGV[4], 'LIMIT', 0, 100)) do
  evict(key)
end
if redis.call('HSETNX', texts, ARGV[1], ARGV[2]) == 1 then
  redis.call('INCRBY', size, string.len(ARGV[2]))
end
redis.call('ZADD', order, ARGV[3], ARGV[1])
while redis.call('ZCARD', order) > tonumber(ARGV[5])
    or tonumber(redis.call('GET', size) or '0') > tonumber(ARGV[6]) do
  local oldest = redis.call('ZRANGE', order, 0, 0)[1]
  if not oldest then break end
  evict(oldest)
end
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[7]) end
"""
# KEYS: texts, order, size. ARGV: key, now, ttl. A hit counts as a use (LRU, not
# FIFO) and keeps the store alive as a put does.
_GET = """
local text = redis.call('HGET', KEYS[1], ARGV[1])
if text then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
  for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[3]) end
end
return text
"""


class MemoryTextStore:
    """In process, synchronous: a per-process cache, or the whole store without Redis."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0  # characters held (GraphQL documents are mostly ASCII)
        self._texts: OrderedDict[str, str] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._texts

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, key: str) -> str | None:
        if (text := self._texts.get(key)) is not None:
            self._texts.move_to_end(key)
        return text

    def put(self, key: str, text: str) -> None:
        if len(text) > self.max_bytes:
            return
        if (old := self._texts.pop(key, None)) is not None:
            self.size -= len(old)
        self._texts[key] = text
        self.size += len(text)
        while len(self._texts) > self.max_entries or self.size > self.max_bytes:
            _, evicted = self._texts.popitem(last=False)
            self.size -= len(evicted)


class RedisTextStore:
    """Three keys in one hash slot (`{namespace}`: one Lua script on a Redis Cluster
    too), each with a TTL: under the documented `volatile-lru` policy Redis may evict
    them, never the dispatch state (README, "Hardening")."""

    def __init__(
        self,
        client: RedisClient,
        *,
        namespace: str,
        max_entries: int,
        max_bytes: int,
        ttl: int,
    ) -> None:
        self.client = client
        tag = "{" + namespace + "}"
        self.keys = (f"{tag}:texts", f"{tag}:order", f"{tag}:bytes")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl

    async def get(self, key: str) -> str | None:
        found = await self.client.eval(_GET, 3, *self.keys, key, time.time(), self.ttl)
        return None if found is None else str(found)

    async def put(self, key: str, text: str) -> None:
        now = time.time()
        await self.client.eval(
            _PUT,
            3,
            *self.keys,
            key,
            text,
            now,
            now - self.ttl,
            self.max_entries,
            self.max_bytes,
            self.ttl,
        )
