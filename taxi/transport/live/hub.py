"""Per-process fan-out: ONE broadcast subscription per channel, subscriptions as records.

A record is what a live subscription costs: which socket and operation, the shared
live query of its document and variables, the feed's filter. Per event the channel's pump
decodes the message once; per record it applies the filter, takes the query's encoded
result (executed once per event and document: taxi/api/strategies/live.py) and offers the
record's frame prefix plus that text to the socket's outbox, which writes it now or
keeps the newest per trip (taxi/transport/live/wire.py). No task, queue or generator per
subscription; nothing here knows HTTP or WebSocket framing."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

from broadcaster import Broadcast

from taxi.api.strategies.live import LiveQuery
from taxi.core import metrics
from taxi.domain import events
from taxi.domain.events import RESYNC_EVENT, Event
from taxi.domain.services.live import End, Feed

log = logging.getLogger("taxi.transport.live")


class Subscriber(Protocol):
    """The socket side of a record (taxi/transport/live/socket.py)."""

    def deliver(self, record: Record, key: str, payload: bytes) -> None: ...

    def end(self, record: Record, error: Exception | None = None) -> None: ...

    def refresh(self, record: Record) -> None: ...


class Record:
    __slots__ = ("feed", "held", "op_id", "prefix", "query", "socket")

    def __init__(
        self,
        socket: Subscriber,
        op_id: str,
        prefix: bytes,
        feed: Feed[Any],
        query: LiveQuery,
    ) -> None:
        self.socket = socket
        self.op_id = op_id
        self.prefix = prefix  # the result frame up to its payload
        self.feed = feed
        self.query = query  # shared by every record of the same document and variables
        # Events that arrive while the first state is read: kept (newest per key,
        # bounded by the socket's outbox size) and replayed after it; None once live.
        self.held: dict[str, Event] | None = {}


class Listener:
    """An in-process consumer of a channel (e.g. the sessions channel that ends
    sockets): a bounded queue read with `async for`. One per process and purpose, not
    per subscription; past `maxsize` unread items the oldest is dropped."""

    def __init__(self, maxsize: int) -> None:
        self._items: collections.deque[Event] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()

    def put(self, item: Event) -> None:
        self._items.append(item)
        self._ready.set()

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class _Channel:
    __slots__ = ("listeners", "records", "task")

    def __init__(self) -> None:
        self.records: dict[Any, None] = {}  # Records (and Listeners); ordered, O(1) removal
        self.listeners: list[Listener] = []
        self.task: asyncio.Task[None] | None = None


class Hub:
    def __init__(
        self, broadcast: Broadcast, *, prefix: str, maxsize: int = 64, mask_internal: bool = False
    ) -> None:
        self.broadcast = broadcast
        self.mask_internal = mask_internal
        self.prefix = prefix
        self.maxsize = maxsize  # per socket: frames kept for a socket that cannot take them
        self._channels: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def watchers(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return len(ch.records) if ch else 0

    async def add(self, record: Record) -> None:
        """Register `record` on its feed's channels, each backend subscription live
        before this returns: the caller reads the current state next, and nothing
        committed in between slips past (it is held, then replayed by `release`)."""
        async with self._lock:
            for channel in record.feed.channels:
                ch = self._channels.get(channel)
                if ch is None:
                    ch = await self._open(channel)
                ch.records[record] = None

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Listener]:
        """A `Listener` on `channels`, live when this enters."""
        listener = Listener(self.maxsize)
        async with self._lock:
            for channel in channels:
                ch = self._channels.get(channel)
                if ch is None:
                    ch = await self._open(channel)
                ch.listeners.append(listener)
                ch.records[listener] = None  # keeps the channel open
        try:
            yield listener
        finally:
            for channel in channels:
                ch = self._channels.get(channel)
                if ch is not None and listener in ch.records:
                    ch.listeners.remove(listener)
                    self._leave(channel, ch, listener)

    async def _open(self, channel: str) -> _Channel:
        ch = _Channel()
        ready = asyncio.Event()
        ch.task = asyncio.create_task(self._pump(channel, ch, ready))
        await ready.wait()
        if ch.task.done():
            ch.task.result()  # re-raise why the backend refused
        self._channels[channel] = ch
        return ch

    def release(self, record: Record) -> None:
        """The first state is out: replay what was held, then deliver live."""
        held, record.held = record.held, None
        ch = self._channels.get(record.feed.channels[0])
        if ch is None or record not in ch.records:
            return  # removed meanwhile (the client stopped it, the socket closed)
        for item in (held or {}).values():
            self._deliver(record, item)

    def remove(self, record: Record) -> None:
        """Synchronous: a closed socket or a completed operation is gone at once."""
        for channel in record.feed.channels:
            ch = self._channels.get(channel)
            if ch is not None:
                self._leave(channel, ch, record)

    def _leave(self, channel: str, ch: _Channel, member: Any) -> None:
        if ch.records.pop(member, 0) == 0 or ch.records:
            return
        del self._channels[channel]
        assert ch.task is not None
        ch.task.cancel()
        self._stopping.add(ch.task)
        ch.task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        for ch in list(self._channels.values()):
            assert ch.task is not None
            ch.task.cancel()
            self._stopping.add(ch.task)
        self._channels.clear()
        for task in list(self._stopping):
            with suppress(asyncio.CancelledError):
                await task

    async def _pump(self, channel: str, ch: _Channel, ready: asyncio.Event) -> None:
        try:
            async with self.broadcast.subscribe(
                events.full_channel(self.prefix, channel)
            ) as subscriber:
                ready.set()
                await self._follow(channel, ch, subscriber)
        finally:
            ready.set()

    async def _follow(self, channel: str, ch: _Channel, subscriber: Any) -> None:
        async for event in subscriber:
            if event is not None:
                self._publish(channel, ch, event.message)

    def _publish(self, channel: str, ch: _Channel, message: str) -> None:
        if message == events.RESYNC:
            item = RESYNC_EVENT
        else:
            try:
                item = events.decode(message)
            except ValueError:
                log.warning("dropping undecodable event on %s", channel)
                return
        for listener in ch.listeners:
            listener.put(item)
        # A copy: delivering may end a record (and remove it) midway.
        for record in tuple(ch.records):
            if type(record) is Record:
                self._deliver(record, item)

    def _deliver(self, record: Record, item: Event) -> None:
        if item is RESYNC_EVENT:
            if record.feed.current is not None:
                record.socket.refresh(record)
            return
        if record.held is not None:
            held = record.held
            held.pop(item.key, None)
            if len(held) >= self.maxsize:
                del held[next(iter(held))]
            held[item.key] = item
            return
        try:
            view = record.feed.see(item)
            if view is None:
                return
            payload = record.query.shared(item, view, mask=self.mask_internal)
        except End:
            record.socket.end(record)
            return
        except Exception as exc:  # noqa: BLE001 - one subscriber's failure is its own
            self.failed += 1
            record.socket.end(record, exc)
            return
        self.delivered += 1  # the one place a delivery happens
        metrics.delivered()
        record.socket.deliver(record, item.key, payload)
