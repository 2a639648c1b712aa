"""The hub and the outbox without sockets: what a never-reading subscriber keeps, what a
failing delivery ends, and in-process listeners (taxi/transport/live/hub.py,
taxi/transport/live/wire.py).
The same behaviour over real sockets is in test_ws.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from taxi.api.build import build_schema
from taxi.api.prepared import DocumentCache
from taxi.api.strategies.live import LiveQueries
from taxi.api.strawberry_adapter import core_schema
from taxi.core.config import Settings
from taxi.domain import events
from taxi.domain.events import Event
from taxi.domain.readmodels import TripView, to_json
from taxi.domain.services.live import Feed
from taxi.main import create_app
from taxi.transport.live.hub import Hub, Record
from taxi.transport.live.wire import Outbox
from tests.helpers import fake_trip
from tests.wait import WAIT


class FakeSeam:
    """A transport that takes frames while `taking` is set, as the server's seam does
    below and above its buffer's high-water mark."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.taking = asyncio.Event()
        self.taking.set()
        self.open = True

    def write_text(self, data: bytes) -> bool:
        return self.write_texts((data,))

    def write_texts(self, frames: Sequence[bytes]) -> bool:
        if not self.taking.is_set() or not self.open:
            return False
        self.written.extend(frames)
        return True

    async def drain(self) -> None:
        await self.taking.wait()


async def no_asgi_send(message: Any) -> None:
    raise AssertionError(f"the seam writes frames, not ASGI send: {message}")


async def test_outbox_keeps_the_newest_state_per_key_and_drops_the_oldest() -> None:
    seam = FakeSeam()
    seam.taking.clear()  # a phone that stopped reading
    outbox = Outbox(no_asgi_send, seam, maxsize=3)
    for key, n in [("a", 1), ("b", 1), ("a", 2)]:
        outbox.offer("op", key, b"%s%d" % (key.encode(), n))
    # a's newer state took the stale one's place: nothing skipped ahead of b.
    assert (len(outbox), outbox.coalesced, outbox.dropped) == (2, 1, 0)
    for key in "cdefg":
        outbox.offer("op", key, key.encode())
        assert len(outbox) <= 3
    assert (len(outbox), outbox.dropped) == (3, 4)
    seam.taking.set()
    await outbox.send(b"after")  # behind everything queued
    assert seam.written == [b"e", b"f", b"g", b"after"]
    assert len(outbox) == 0


async def test_outbox_writes_at_once_and_a_backlog_keeps_its_order() -> None:
    """Frames go straight to the transport while it takes them; once one has to wait,
    later ones queue behind it (never ahead), and messages that must arrive wait for
    the backlog."""
    seam = FakeSeam()
    outbox = Outbox(no_asgi_send, seam, maxsize=8)
    outbox.offer("1", "a", b"1")
    assert seam.written == [b"1"]  # within offer(): no task switch
    seam.taking.clear()
    outbox.offer("1", "a", b"2")
    seam.taking.set()  # the transport drained, but 2 is still queued: 3 goes behind it
    outbox.offer("1", "b", b"3")
    await outbox.send(b"4")
    assert seam.written == [b"1", b"2", b"3", b"4"]
    outbox.offer("1", "a", b"5")
    assert seam.written[-1] == b"5"
    # A stopped operation's queued frames are dropped with it.
    seam.taking.clear()
    outbox.offer("1", "a", b"6")
    outbox.offer("2", "a", b"7")
    outbox.forget("1")
    seam.taking.set()
    await outbox.send(b"8")
    assert seam.written[-2:] == [b"7", b"8"]
    # A socket gone while frames wait: they are dropped, nothing hangs.
    seam.taking.clear()
    outbox.offer("2", "a", b"9")
    seam.open = False
    seam.taking.set()
    await outbox.close()
    assert (len(outbox), seam.written[-1]) == (0, b"8")


class Watcher:
    """The socket side of a hub record (hub.Subscriber), recording what it gets."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.ended: list[Exception | None] = []
        self.arrived = asyncio.Event()

    def deliver(self, record: Record, key: str, payload: bytes) -> None:
        self.got.append(payload)
        self.arrived.set()

    def end(self, record: Record, error: Exception | None = None) -> None:
        self.ended.append(error)
        self.arrived.set()

    def refresh(self, record: Record) -> None:
        raise AssertionError("no resync here")


def trip_of(event: Event) -> TripView:
    return event.trip


def _record(app: Any, watcher: Watcher, channel: str, see: Any) -> Record:
    core = core_schema(build_schema())
    prepared = DocumentCache(core, introspection=True).get("subscription { tripRequested { id } }")
    operation = prepared.operation(None)
    assert prepared.document is not None and operation is not None
    query = LiveQueries(core).shared(prepared.document, operation, None)
    return Record(watcher, "op", b"", Feed((channel,), see), query)


async def test_a_failing_delivery_ends_only_its_own_subscription(settings: Settings) -> None:
    """The pump delivers to every record of a channel in turn: what one delivery raises
    (a malformed event, a frame that cannot be built) ends that subscription alone,
    with its error; the pump and the others go on."""
    app: Any = create_app(settings)
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.live.hub
        channel = f"test:{uuid.uuid4()}"
        good, bad = Watcher(), Watcher()

        def broken(item: dict[str, Any]) -> Any:
            raise KeyError("trip")

        good_record = _record(app, good, channel, trip_of)
        bad_record = _record(app, bad, channel, broken)
        for record in (bad_record, good_record):
            await hub.add(record)
            hub.release(record)
        for _ in range(3):
            trip = fake_trip()
            message = {"kind": "requested", "key": str(trip.id), "trip": trip}
            good.arrived.clear()
            await app.state.services.broadcast.publish(
                events.full_channel(hub.prefix, channel), to_json(message).decode()
            )
            await asyncio.wait_for(good.arrived.wait(), WAIT)
            expected = {"data": {"tripRequested": {"id": str(trip.id)}}}
            assert orjson.loads(good.got[-1][:-1]) == expected
        assert len(good.got) == 3 and good.ended == []
        assert [type(e) for e in bad.ended] == [KeyError] * 3  # the socket removes it
        hub.remove(good_record)
        hub.remove(bad_record)
        assert hub.watchers(channel) == 0


async def test_a_never_reading_subscriber_stays_bounded(settings: Settings) -> None:
    app: Any = create_app(settings.model_copy(update={"subscriber_queue_size": 8}))
    async with app.router.lifespan_context(app):
        services = app.state.services
        hub: Hub = app.state.live.hub
        assert hub.maxsize == 8
        # A channel of its own, so nothing else can overflow the reading socket.
        channel = f"test:{uuid.uuid4()}"
        sent: list[str] = []
        slow_seam, fast_seam = FakeSeam(), FakeSeam()
        slow_seam.taking.clear()
        slow = Outbox(no_asgi_send, slow_seam, maxsize=hub.maxsize)
        fast = Outbox(no_asgi_send, fast_seam, maxsize=hub.maxsize)

        class Sock(Watcher):
            def __init__(self, outbox: Outbox) -> None:
                super().__init__()
                self.outbox = outbox

            def deliver(self, record: Record, key: str, payload: bytes) -> None:
                self.outbox.offer(record.op_id, key, payload)
                self.arrived.set()

        fast_sock = Sock(fast)
        records = [
            _record(app, Sock(slow), channel, trip_of),
            _record(app, fast_sock, channel, trip_of),
        ]
        for record in records:
            await hub.add(record)
            hub.release(record)
        for _ in range(5 * hub.maxsize):
            trip = fake_trip()
            sent.append(str(trip.id))
            message = {"kind": "requested", "key": str(trip.id), "trip": trip}
            fast_sock.arrived.clear()
            await services.broadcast.publish(
                events.full_channel(hub.prefix, channel), to_json(message).decode()
            )
            await asyncio.wait_for(fast_sock.arrived.wait(), WAIT)  # every event, in order
            data = orjson.loads(fast_seam.written[-1][:-1])
            assert data == {"data": {"tripRequested": {"id": str(trip.id)}}}
            assert len(slow) <= hub.maxsize
        assert (len(slow), slow.dropped) == (hub.maxsize, 4 * hub.maxsize)
        # What the slow one kept is the newest of what was sent, oldest first.
        slow_seam.taking.set()
        await slow.send(b"")
        kept = [orjson.loads(f[:-1])["data"]["tripRequested"]["id"] for f in slow_seam.written[:-1]]
        assert kept == sent[-hub.maxsize :]
        assert (len(fast), fast.dropped, len(fast_seam.written)) == (0, 0, 5 * hub.maxsize)
        for record in records:
            hub.remove(record)


async def test_an_in_process_listener_hears_its_channels(settings: Settings) -> None:
    """`Hub.subscribe`: one process-wide consumer of channels (e.g. ended sessions), not a
    subscription; the channel stays open while it listens and closes after."""
    app: Any = create_app(settings)
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.live.hub
        one, two = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
        async with hub.subscribe(one, two) as listener:
            assert hub.watchers(one) == hub.watchers(two) == 1
            for channel, n in ((one, 1), (two, 2)):
                await app.state.services.broadcast.publish(
                    events.full_channel(hub.prefix, channel),
                    orjson.dumps({"kind": "session_ended", "key": "k", "n": n}).decode(),
                )
                item = await asyncio.wait_for(anext(listener), WAIT)
                assert (item.kind, item.body["n"]) == (events.Kind.SESSION_ENDED, n)
        assert hub.watchers(one) == hub.watchers(two) == 0
