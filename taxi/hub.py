"""Per-process fan-out: ONE broadcast subscription per channel, bounded inboxes per watcher.

broadcaster gives each subscriber an unbounded queue, and its first-subscriber path
can race. Here each channel has one pump task that decodes an event once and hands
it to every local inbox. An inbox holds at most `maxsize` keys; a newer state for a
key (a trip) replaces the stale one in place, so a phone that stops reading costs a
bounded amount of memory and never slows the others.

An inbox may also deliver inline (`Inbox.direct`): while its consumer sits idle with
nothing queued, the pump hands the event to `direct`, which filters it and returns the
frame's send (or True: nothing to send, or False: queue it). The pump steps that send
once; a socket that can take the frame takes it then and there, with no task switch
per subscriber. One whose buffer is full suspends the send: the consumer's own task
finishes it (in order, before anything queued behind it), so a slow phone still holds
back nobody but itself."""

from __future__ import annotations

import asyncio
import logging
import types
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import asynccontextmanager, suppress
from typing import Any

from broadcaster import Broadcast
from starlette.websockets import WebSocketDisconnect

from taxi import events, metrics

log = logging.getLogger(__name__)

Item = dict[str, Any]
RESYNC_ITEM: Item = {"kind": events.RESYNC, "key": events.RESYNC}
Send = Coroutine[Any, Any, Any]
# What `Inbox.direct` returns: a send to run, True (handled, nothing to send) or False
# (queue the item for the consumer).
Direct = Callable[[Item], "Send | bool"]


class Inbox:
    __slots__ = (
        "_error",
        "_idle",
        "_items",
        "_pending",
        "_ready",
        "direct",
        "dropped",
        "maxsize",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, Item] = OrderedDict()
        self._ready = asyncio.Event()
        self._idle = False  # the consumer waits in get() with nothing to do
        self._pending: tuple[Send, Any] | None = None  # a started send that had to wait
        self._error: Exception | None = None  # what inline delivery raised, for the consumer
        self.direct: Direct | None = None
        self.dropped = 0

    def put(self, item: Item) -> None:
        if self.direct is not None and self._idle and self._pending is None:
            try:
                outcome = self.direct(item)
            except Exception as exc:  # noqa: BLE001 - re-raised in the subscriber's stream
                self._fail(exc)
                return
            if outcome is True:
                return
            if outcome is not False:
                self._start(outcome)
                return
        key = item["key"]
        if key in self._items:
            self._items[key] = item  # newest state wins, in the stale one's place
            self.dropped += 1
            metrics.coalesced()
        else:
            if len(self._items) >= self.maxsize:
                self._items.popitem(last=False)
                self.dropped += 1
                metrics.dropped()
            self._items[key] = item
        self._ready.set()

    def _start(self, send: Send) -> None:
        try:
            waiting_on = send.send(None)
        except StopIteration:
            return  # written
        except (OSError, RuntimeError, WebSocketDisconnect):
            # The socket is going away; its consumer learns it from its own next send
            # or the disconnect, and nothing more is sent from here.
            self.direct = None
            return
        except Exception as exc:  # noqa: BLE001 - re-raised in the subscriber's stream
            self._fail(exc)
            return
        self._pending = (send, waiting_on)
        self._ready.set()

    def _fail(self, exc: Exception) -> None:
        """This runs in the channel's pump: what one subscriber's delivery raised must
        not stop the others. Its own stream raises it, as its own task would have."""
        self.direct = None
        self._error = exc
        self._ready.set()

    async def get(self) -> Item:
        while True:
            if self._error is not None:
                raise self._error
            if self._pending is not None:
                try:
                    await _resume(*self._pending)
                finally:
                    self._pending = None
            if self._items:
                return self._items.popitem(last=False)[1]
            self._ready.clear()
            self._idle = True
            try:
                await self._ready.wait()
            finally:
                self._idle = False

    def close(self) -> None:
        if self._pending is not None:
            self._pending[0].close()
            self._pending = None

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> Item:
        return await self.get()


@types.coroutine
def _resume(send: Send, waiting_on: Any) -> Generator[Any, Any, Any]:
    """Drive a coroutine that someone else started and that suspended on `waiting_on`,
    as the task running it would: wait for what it waits on, then step it again."""
    while True:
        try:
            yield waiting_on
        except GeneratorExit:
            send.close()
            raise
        except asyncio.CancelledError as exc:  # the send gets it, as in a task
            try:
                waiting_on = send.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            waiting_on = send.send(None)
        except StopIteration as stop:
            return stop.value


class _Channel:
    __slots__ = ("inboxes", "task")

    def __init__(self) -> None:
        self.inboxes: set[Inbox] = set()
        self.task: asyncio.Task[None] | None = None


class Hub:
    def __init__(self, broadcast: Broadcast, *, prefix: str, maxsize: int = 64) -> None:
        self.broadcast = broadcast
        self.prefix = prefix
        self.maxsize = maxsize
        self._channels: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()

    def watchers(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return len(ch.inboxes) if ch else 0

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Inbox]:
        inbox = Inbox(self.maxsize)
        async with self._lock:
            ch = self._channels.get(channel)
            if ch is None:
                ch = self._channels[channel] = _Channel()
                ready = asyncio.Event()
                ch.task = asyncio.create_task(self._pump(channel, ch, ready))
                # The backend subscription is live before the caller reads the current
                # state, so nothing committed in between can slip past.
                await ready.wait()
                if ch.task.done():
                    del self._channels[channel]
                    ch.task.result()  # re-raise why the backend refused
            ch.inboxes.add(inbox)
        try:
            yield inbox
        finally:
            ch.inboxes.discard(inbox)
            inbox.close()
            if not ch.inboxes:
                async with self._lock:
                    if not ch.inboxes and self._channels.get(channel) is ch:
                        del self._channels[channel]
                        assert ch.task is not None
                        ch.task.cancel()
                        with suppress(asyncio.CancelledError):
                            await ch.task

    async def _pump(self, channel: str, ch: _Channel, ready: asyncio.Event) -> None:
        try:
            async with self.broadcast.subscribe(
                events.full_channel(self.prefix, channel)
            ) as subscriber:
                ready.set()
                await self._deliver(channel, ch, subscriber)
        finally:
            ready.set()

    async def _deliver(self, channel: str, ch: _Channel, subscriber: Any) -> None:
        async for event in subscriber:
            if event is None:
                continue
            if event.message == events.RESYNC:
                item = RESYNC_ITEM
            else:
                try:
                    item = events.decode(event.message)
                except ValueError:
                    log.warning("dropping undecodable event on %s", channel)
                    continue
            for inbox in ch.inboxes:
                inbox.put(item)
