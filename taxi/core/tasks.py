"""Background tasks that live as long as a block or an object: started, then cancelled
and awaited, so none outlives what owns it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancels `task` (None: nothing to do) and waits until it has ended."""
    if task is None:
        return
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def stop_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels `tasks` and waits until each has ended, whatever it ended with (what
    owned them is going away). Their exceptions' tracebacks are dropped: they run
    through the tasks' frames, which hold their owner's objects, and a library frame
    that keeps the exception it raised (SQLAlchemy's error handler) closes a reference
    cycle around all of it, left for the collector to find: a closed socket's, whose
    objects are frozen by then (taxi/core/gcpolicy.py)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except BaseException as exc:  # noqa: BLE001 - ended with its owner, whatever it was
            exc.__traceback__ = None


@asynccontextmanager
async def background(work: Coroutine[Any, Any, None], *, name: str) -> AsyncIterator[None]:
    """Runs `work` as a task while the block runs; stopped when the block ends."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        await stop(task)
