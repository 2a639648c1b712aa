"""Persisted documents (PROTOCOL.md): Automatic Persisted Queries as Apollo Client's
`createPersistedQueryLink` and urql's `persistedExchange` send them
(`extensions.persistedQuery = {version: 1, sha256Hash}`), and trusted documents
(`PERSISTED_DOCUMENTS=only`: the manifest's documents and nothing else).

`resolve` is the one place a request's document is decided, for HTTP (POST and GET)
and for a WebSocket `subscribe`. A document is registered only once it parses and
validates against the schema (junk with its real hash stored 60 KiB per request, for a
week, unauthenticated), in a store bounded in documents and bytes, least recently used
evicted first (taxi/core/textstore.py): Redis when it is configured (every process sees
what any of them registered), process memory otherwise. Each process also keeps an LRU
of what it resolved: a document never changes under its hash, so it cannot go stale."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import RedisClusterException, RedisError

from taxi.api.prepared import MAX_KEPT_CHARS as MAX_CACHED_CHARS
from taxi.core.broadcast import RedisClient
from taxi.core.textstore import MemoryTextStore, RedisTextStore
from taxi.domain.errors import AppError

log = logging.getLogger(__name__)

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
LOCAL_ENTRIES = 1000  # per-process LRU in front of Redis
TTL_SECONDS = 7 * 24 * 3600  # a registered document unused this long is forgotten
MAX_DOCUMENT_BYTES = MAX_CACHED_CHARS  # larger documents are run, never registered
_DOWN = (RedisError, RedisClusterException, OSError)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Refused(AppError):
    """A request the persisted-documents rules refuse; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def load_manifest(path: Path) -> dict[str, str]:
    """hash → document, from a JSON object of that shape, or Apollo's persisted-query
    manifest (`{"format": "apollo-persisted-query-manifest", "operations": [...]}`)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("operations"), list):
        data = {op["id"]: op["body"] for op in data["operations"]}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: not a JSON object of hash -> document")
    return data


class Documents:
    """The store and the rules, one per process (taxi.main opens it). `valid`: whether
    a document parses and validates against the schema (taxi/api/schema/check.py)."""

    def __init__(
        self,
        *,
        mode: str,
        valid: Callable[[str], bool],
        manifest: dict[str, str] | None = None,
        redis: RedisClient | None = None,
        prefix: str = "taxi",
        max_documents: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.mode = mode
        self.valid = valid
        self.manifest = manifest or {}
        self.shared = (
            None
            if redis is None
            else RedisTextStore(
                redis,
                namespace=f"{prefix}:pq",
                max_entries=max_documents,
                max_bytes=max_bytes,
                ttl=TTL_SECONDS,
            )
        )
        entries = max_documents if self.shared is None else min(LOCAL_ENTRIES, max_documents)
        self.local = MemoryTextStore(max_entries=entries, max_bytes=max_bytes)

    async def _get(self, digest: str) -> str | None:
        if (document := self.local.get(digest)) is not None:
            return document
        if self.shared is None:
            return None
        try:
            found = await self.shared.get(digest)
        except _DOWN as exc:
            # Not found is safe: the client sends the document again.
            log.warning("persisted documents: redis unavailable: %r", exc)
            return None
        if found is not None:
            self.local.put(digest, found)
        return found

    async def _put(self, digest: str, document: str) -> None:
        if len(document) > MAX_DOCUMENT_BYTES or digest in self.local:
            return
        if not self.valid(document):
            return  # stores nothing; the executor answers with why it is invalid
        self.local.put(digest, document)
        if self.shared is not None:
            try:
                await self.shared.put(digest, document)
            except _DOWN as exc:
                log.warning("persisted documents: redis unavailable: %r", exc)

    def as_sent(self, extensions: object) -> bool:
        """`resolve` would answer with the query as sent, looking nothing up: no
        persisted document named, and documents as text allowed."""
        if self.mode == "only":
            return False
        return not isinstance(extensions, dict) or extensions.get("persistedQuery") is None

    async def resolve(self, *, query: object, extensions: object) -> object:
        """The document to run for a request's `query` and `extensions`, or Refused.
        Anything that is not ours to judge (a missing or non-string query) is passed
        through for the GraphQL layer to report."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            if self.mode == "only":
                raise Refused("FORBIDDEN", "Only persisted documents may run here.")
            return query
        if self.mode == "off":
            raise Refused(NOT_SUPPORTED, "PersistedQueryNotSupported")
        digest = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if (
            not isinstance(persisted, dict)
            or persisted.get("version") != 1
            or not isinstance(digest, str)
            or not _SHA256.fullmatch(digest)
        ):
            raise Refused(
                "BAD_USER_INPUT",
                "persistedQuery must be {version: 1, sha256Hash: <64 lowercase hex digits>}.",
            )
        if self.mode == "only":
            if (document := self.manifest.get(digest)) is not None:
                return document
            if isinstance(query, str):
                raise Refused("FORBIDDEN", "Only persisted documents may run here.")
            raise Refused(NOT_FOUND, "PersistedQueryNotFound")
        if isinstance(query, str):
            if sha256(query) != digest:
                raise Refused("BAD_USER_INPUT", "provided sha does not match query")
            await self._put(digest, query)
            return query
        if (document := await self._get(digest)) is None:
            raise Refused(NOT_FOUND, "PersistedQueryNotFound")
        return document
