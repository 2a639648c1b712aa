"""Persisted documents (PROTOCOL.md): Automatic Persisted Queries as Apollo Client's
`createPersistedQueryLink` and urql's `persistedExchange` send them
(`extensions.persistedQuery = {version: 1, sha256Hash}`), and trusted documents
(`PERSISTED_DOCUMENTS=only`: the manifest's documents and nothing else).

`resolve` is the one place a request's document is decided, for HTTP (POST and GET)
and for a WebSocket `subscribe`. Registered documents live in Redis when it is
configured (every process sees what any of them registered; one key per document, so a
cluster client works too), with a TTL that is renewed on use; in process memory (an
LRU) otherwise. Each process also keeps an LRU of what it resolved: a document never
changes under its hash, so that cache cannot go stale."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from taxi.domain.errors import AppError

log = logging.getLogger(__name__)

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
LOCAL_ENTRIES = 1000  # per-process LRU (and the whole store without Redis)
TTL_SECONDS = 7 * 24 * 3600  # a registered document unused this long is forgotten
MAX_DOCUMENT_BYTES = 64 * 1024  # larger documents are run, never registered
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
    """The store and the rules, one per process (taxi.main opens it)."""

    def __init__(
        self,
        *,
        mode: str,
        manifest: dict[str, str] | None = None,
        redis: Any = None,
        prefix: str = "taxi",
    ) -> None:
        self.mode = mode
        self.manifest = manifest or {}
        self.redis = redis
        self.prefix = prefix
        self._local: OrderedDict[str, str] = OrderedDict()

    def _key(self, digest: str) -> str:
        return f"{self.prefix}:pq:{digest}"

    def _remember(self, digest: str, document: str) -> None:
        self._local[digest] = document
        self._local.move_to_end(digest)
        if len(self._local) > LOCAL_ENTRIES:
            self._local.popitem(last=False)

    async def _get(self, digest: str) -> str | None:
        if (document := self._local.get(digest)) is not None:
            self._local.move_to_end(digest)
            return document
        if self.redis is None:
            return None
        try:
            found: str | None = await self.redis.getex(self._key(digest), ex=TTL_SECONDS)
        except (RedisError, OSError) as exc:
            # Not found is safe: the client sends the document again.
            log.warning("persisted documents: redis unavailable: %r", exc)
            return None
        if found is not None:
            self._remember(digest, found)
        return found

    async def _put(self, digest: str, document: str) -> None:
        if len(document) > MAX_DOCUMENT_BYTES or digest in self._local:
            return
        self._remember(digest, document)
        if self.redis is not None:
            try:
                await self.redis.set(self._key(digest), document, ex=TTL_SECONDS)
            except (RedisError, OSError) as exc:
                log.warning("persisted documents: redis unavailable: %r", exc)

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
