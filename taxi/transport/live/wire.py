"""One socket's outbound frames: written at once when the socket can take them, else
kept bounded (newest state per key) and flushed by one task while there is a backlog.

The write goes through the server's frame seam (taxi/transport/server.py) when the server offers
one, else through the ASGI `send`. The hub calls `offer` for every subscriber of an
event, so it never waits: a socket whose transport is over its high-water mark (a
phone that stopped reading) gets its frames queued here, a newer frame for the same
key (operation, trip) replacing the stale one in place, at most `maxsize` of them.
Nothing here grows without bound, and one slow socket holds back nobody else."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any, Protocol

from taxi.core import metrics

log = logging.getLogger("taxi.transport.live")

# The scope extension under which the server offers its seam (taxi/transport/server.py).
FRAMES = "taxi.frames"
Key = tuple[str, str]  # (operation id, what the frame is about: a trip id)
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


class Seam(Protocol):
    """What taxi.transport.server.WebSocketProtocol offers as scope["extensions"]["taxi.frames"]."""

    @property
    def open(self) -> bool: ...

    def write_text(self, data: bytes) -> bool: ...

    def write_texts(self, frames: Sequence[bytes]) -> bool: ...

    async def drain(self) -> None: ...


class Gone(Exception):
    """The socket closed while a frame waited to be written."""


async def unless_gone(work: Coroutine[Any, Any, None]) -> None:
    """`work`, in a task of its own; a socket that closed under it ends it quietly."""
    with suppress(Gone):
        await work


class Outbox:
    __slots__ = ("_flusher", "_pending", "_seam", "_send", "coalesced", "dropped", "maxsize")

    def __init__(self, send: ASGISend, seam: Seam | None, *, maxsize: int) -> None:
        self._send = send
        self._seam = seam
        self._pending: OrderedDict[Key, bytes] = OrderedDict()
        self._flusher: asyncio.Task[None] | None = None
        self.maxsize = maxsize
        self.coalesced = 0  # replaced by a newer state for the same key
        self.dropped = 0  # pushed out, oldest first, by the bound

    def offer(self, op_id: str, about: str, data: bytes) -> None:
        """A data frame from the hub: written now if the socket takes it, else kept as
        the newest for (operation, what it is about). Never waits, never raises."""
        if self._flusher is None and self._seam is not None and self._seam.write_text(data):
            return  # the common case: straight to the transport
        key = (op_id, about)
        if key in self._pending:
            self._pending[key] = data  # newest state wins, in the stale one's place
            self.coalesced += 1
            metrics.coalesced()
        else:
            if len(self._pending) >= self.maxsize:
                self._pending.popitem(last=False)
                self.dropped += 1
                metrics.dropped()
            self._pending[key] = data
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    def __len__(self) -> int:
        return len(self._pending)

    def forget(self, op_id: str) -> None:
        """An operation ended: its queued frames are stale."""
        for key in [k for k in self._pending if k[0] == op_id]:
            del self._pending[key]

    def write_now(self, *frames: bytes) -> bool:
        """`send` from a callback, which cannot wait: written in one write if nothing is
        queued and the transport takes them now. False: nothing written (`send` them)."""
        seam = self._seam
        if self._flusher is not None or seam is None:
            return False
        return seam.write_text(frames[0]) if len(frames) == 1 else seam.write_texts(frames)

    async def send(self, *frames: bytes) -> None:
        """Messages that must arrive (an ack, a first state, an answer and its
        complete), from the socket's own task: after everything queued before them,
        several in one write."""
        while (flusher := self._flusher) is not None:
            await asyncio.wait((flusher,))  # not cancelled with us: it is the socket's
        seam = self._seam
        if seam is None:
            for data in frames:
                await self._send({"type": "websocket.send", "text": data.decode()})
            return
        while not (seam.write_text(frames[0]) if len(frames) == 1 else seam.write_texts(frames)):
            if not seam.open:
                raise Gone
            await seam.drain()

    async def _flush(self) -> None:
        try:
            while self._pending:
                # Peeked, not popped, until written: a newer state for the same key
                # still replaces it while the transport is full.
                key, data = next(iter(self._pending.items()))
                seam = self._seam
                if seam is None:
                    del self._pending[key]
                    await self._send({"type": "websocket.send", "text": data.decode()})
                elif seam.write_text(data):
                    del self._pending[key]
                elif not seam.open:
                    raise Gone
                else:
                    await seam.drain()
        except (Gone, OSError, RuntimeError) as exc:
            # The socket is going away; its receive loop learns it and cleans up.
            log.debug("dropping queued frames of a closed socket: %r", exc)
            self._pending.clear()
        finally:
            self._flusher = None

    async def close(self) -> None:
        self._pending.clear()
        if (flusher := self._flusher) is not None:
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
