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
        # Per channel, the task stopping its last pump (until that pump unsubscribed).
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed = 0
        # The last message decoded and its event: one change's message to several
        # channels (a wave's offer to each driver's) arrives once per channel, back to
        # back; decoded and its frames rendered once (Event.frames), not once a channel.
        self._last: tuple[str, Event] = (events.RESYNC, RESYNC_EVENT)

    def watchers(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return len(ch.records) if ch else 0

    async def add(self, record: Record) -> None:
        """Register `record` on its feed's channels, each backend subscription live
        before this returns: the caller reads the current state next, and nothing
        committed in between slips past (it is held, then replayed by `release`)."""
        try:
            async with self._lock:
                for channel in record.feed.channels:
                    ch = self._channels.get(channel)
                    if ch is None:
                        ch = await self._open(channel)
                    ch.records[record] = None
        except BaseException:
            # Cancelled (the client stopped it 0-8 ms after starting it) or refused
            # halfway through a feed's channels: none of them keeps the record.
            self.remove(record)
            raise

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
        # A pump of this channel still stopping unsubscribes when it ends: a new one
        # subscribing meanwhile would be unsubscribed by it on the backend.
        if (old := self._stopping.get(channel)) is not None:
            await asyncio.wait({old})
        ch = _Channel()
        ready = asyncio.Event()
        ch.task = asyncio.create_task(self._pump(channel, ch, ready))
        try:
            await ready.wait()
        except asyncio.CancelledError:
            # The caller went away while the backend subscribed: the pump must not be
            # left running with no channel entry (it leaked, subscribed, for good).
            self._retire(channel, ch.task, ready)
            raise
        if ch.task.done():
            ch.task.result()  # re-raise why the backend refused
        self._channels[channel] = ch
        return ch

    def _retire(
        self, channel: str, pump: asyncio.Task[None], ready: asyncio.Event | None = None
    ) -> None:
        """Stop `pump` once it is subscribed (`ready`; None: it is): broadcaster's
        `subscribe` cancelled halfway through raised KeyError and left its bookkeeping
        behind. Kept referenced (a pending task nobody holds is destroyed) until it
        has unsubscribed."""

        async def stop() -> None:
            if ready is not None:
                await ready.wait()
            pump.cancel()
            with suppress(asyncio.CancelledError):
                await pump

        task = asyncio.create_task(stop())
        self._stopping[channel] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._stopping.get(channel) is task:
                del self._stopping[channel]

        task.add_done_callback(done)

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
        self._retire(channel, ch.task)

    async def close(self) -> None:
        for channel, ch in list(self._channels.items()):
            assert ch.task is not None
            self._retire(channel, ch.task)
        self._channels.clear()
        if stopping := list(self._stopping.values()):
            await asyncio.wait(stopping)

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
        elif message == self._last[0]:
            item = self._last[1]
        else:
            try:
                item = events.decode(message)
            except ValueError:
                log.warning("dropping undecodable event on %s", channel)
                return
            self._last = (message, item)
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
