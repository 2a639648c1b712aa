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


@asynccontextmanager
async def background(work: Coroutine[Any, Any, None], *, name: str) -> AsyncIterator[None]:
    """Runs `work` as a task while the block runs; stopped when the block ends."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        await stop(task)
