"""The garbage collector of a serving process: full collections that stay short with
thousands of sockets open (`GC_TUNING`, on under `taxi serve`; tests' in-process apps
keep CPython's defaults).

Why (bench/rush.py on the 2-core bench VM, Python 3.11): an open socket costs ~170
objects the collector tracks (the coroutines and frames of the ASGI stack, its records,
uvicorn's protocol), and a full (gen-2) collection walks all of them: 1.8-2.3 s at
10,000 sockets. CPython runs one whenever a quarter as many objects as its oldest
generation holds were promoted since the last, short-lived ones included: several a
minute under load.

The policy:
1. At start-up and after every full collection, `gc.freeze()`: the survivors move to
   the permanent generation, which no collection walks, so the next full collection
   walks only what was promoted since. An object frozen and later freed by reference
   counting leaves the permanent generation as usual.
2. A frozen object that becomes garbage inside a reference cycle stays until thawed.
   A closed socket left ~80 such objects (uvicorn's protocol with the app's objects
   hung on it, kept in cycles by the adapter's references back: its listener, the
   protocol in its own scope); since the adapter drops them when the connection is
   lost (taxi/transport/server.py), almost none (SOCKET). The transport says so
   (`closed`) when a socket closes; once what was released since the last walk
   exceeds a quarter of the heap (the interpreter's allocated blocks now, which frozen
   garbage still holds), `gc.unfreeze()` and a full collection right after: it walks
   the whole heap (seconds at 10,000 sockets), frees that garbage, and freezes again.
   Garbage stays within about a third of what is alive, as CPython's own rule keeps
   it within a quarter of its oldest generation. A heap that grows with
   live objects (sockets opening: a city's morning) holds no such garbage: it is walked
   only once it has doubled beyond what the sockets opened since the last walk hold
   (SOCKET_BLOCKS each), a backstop for garbage nobody reported, bounded by the open
   sockets as the heap itself is. The walk that came with every quarter of growth
   landed, at 10,000 sockets, in the first seconds of rush hour (a 2-3 s pause); the
   walk at every doubling, while the sockets connected (0.3, 0.5 and 1.1 s). (`gc.
   get_freeze_count()` would be the direct measure, but it walks the permanent
   generation: 1.5 s for 2.4 million objects on the bench VM; `sys.getallocatedblocks()`
   takes < 1 ms.)

3. Full collections often and small: `gc.set_threshold(700, 10, 1)`, one after every
   second young-generation (gen-1) collection instead of every eleventh. Under load
   the objects promoted between two of them are mostly what each socket holds while it
   waits for its next message (the pending read's future and coroutines, the frame
   parser's generator: ~6 per message, alive until the next one seconds later), and a
   full collection walks them with their references into the frozen heap (~1.4 µs
   each at 10,000 sockets). A walk per ~0.25 s instead of per ~1.3 s costs about the
   same CPU in all but pauses 11 ms at most instead of 35-50 ms (rush hour at
   D=10,000; a walk per ~4 s: 176 ms).

What it gained, and the alternatives measured and dropped: docs/performance.md."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

# gc.set_threshold: CPython's young generations, a full collection after every second
# gen-1 collection (3. above)
THRESHOLD = (700, 10, 1)
GARBAGE = 0.25  # released objects, as a share of the heap, that call for a walk
GROWTH = 2.0  # the heap may grow by this factor between two walks of all of it ...
# ... beyond the allocated blocks each socket opened since holds: bench.rush's sockets
# (drivers listening for offers, riders watching their trips) took 318-329 each while
# 2,500 to 12,400 were open (sys.getallocatedblocks(), 2026-12-06).
SOCKET_BLOCKS = 300
# Objects a closed socket leaves in frozen reference cycles: 0.4 (drivers) to 1.6 (riders)
# measured with the collector frozen while 20 were open, then closed (83 before the
# adapter dropped its references back; tests/test_gcpolicy.py).
SOCKET = 2


class _Policy:
    def __init__(self) -> None:
        self.thawed = False
        self.base = sys.getallocatedblocks()
        self.released = 0  # objects left in frozen cycles since the last walk
        self.walks = 0
        self.sockets = 0  # open now
        self.base_sockets = 0  # open at the last walk

    def due(self) -> bool:
        """Released garbage past a quarter of the heap now (not the heap at the last walk:
        after a morning of sockets opening it is many times that, and a few thousand
        drivers reconnecting would call for a walk of seconds), or the heap doubled
        beyond what the sockets opened since the last walk hold."""
        blocks = sys.getallocatedblocks()
        opened = max(0, self.sockets - self.base_sockets)
        return (
            self.released > blocks * GARBAGE
            or blocks > (self.base + opened * SOCKET_BLOCKS) * GROWTH
        )

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        if self.thawed:  # that collection walked everything: a new base
            gc.freeze()
            self.thawed, self.base, self.released = False, sys.getallocatedblocks(), 0
            self.base_sockets = self.sockets
        elif self.due():
            gc.unfreeze()
            self.thawed = True
            self.walks += 1
            _walk_soon()
        else:
            gc.freeze()


def _walk_soon() -> None:
    """The whole-heap walk right away (a callback cannot collect), while the heap is
    still growing, rather than whenever CPython's next full collection comes: once the
    heap stopped growing, nothing is left to walk. Outside the event loop's thread, the
    next full collection walks."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_soon(gc.collect)


_installed: list[_Policy] = []


def opened() -> None:
    """A socket opened: the heap grows by what it holds, no garbage."""
    if _installed:
        _installed[0].sockets += 1


def closed(objects: int = SOCKET) -> None:
    """A socket closed: `objects` probably became garbage in frozen reference cycles."""
    if _installed:
        _installed[0].sockets -= 1
        _installed[0].released += objects


def walks() -> int:
    """Whole-heap walks so far (what the bench and the tests watch)."""
    return _installed[0].walks if _installed else 0


def sockets() -> int:
    """Sockets open now, as the policy counts them (what the bench logs)."""
    return _installed[0].sockets if _installed else 0


def install() -> None:
    """Once per process, after start-up: what exists now is frozen, and the policy
    runs after every full collection."""
    if _installed:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLD)
    policy = _Policy()
    _installed.append(policy)
    gc.callbacks.append(policy)
