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
   A closed socket leaves ~77 such objects (uvicorn's protocol and transport, a
   cancelled task's traceback: 1,000 sockets opened and closed twice, then one
   `gc.unfreeze()` + collection freed 155,000 objects). So once the heap (the
   interpreter's allocated blocks, which frozen garbage still holds) has grown by a
   quarter since the last thaw, `gc.unfreeze()` and a full collection right after: it
   walks the whole heap, frees that garbage, and freezes again. Memory stays within a
   quarter of the heap after that walk, as CPython's own rule keeps garbage within a
   quarter of its oldest generation; whole-heap walks come only while the heap grows
   (sockets opening, or closed ones' garbage piling up). (`gc.get_freeze_count()` would
   be the direct measure, but it walks the permanent generation: 1.5 s for 2.4 million
   objects on the bench VM; `sys.getallocatedblocks()` takes < 1 ms.)

What it gained, and the alternatives measured and dropped: docs/performance.md."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

GROWTH = 1.25  # the heap may grow by this factor between two walks of all of it


class _Policy:
    def __init__(self) -> None:
        self.thawed = False
        self.base = sys.getallocatedblocks()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        if self.thawed:  # that collection walked everything: a new base
            gc.freeze()
            self.thawed, self.base = False, sys.getallocatedblocks()
        elif sys.getallocatedblocks() > self.base * GROWTH:
            gc.unfreeze()
            self.thawed = True
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


def install() -> None:
    """Once per process, after start-up: what exists now is frozen, and the policy
    runs after every full collection."""
    if _installed:
        return
    gc.collect()
    gc.freeze()
    policy = _Policy()
    _installed.append(policy)
    gc.callbacks.append(policy)
