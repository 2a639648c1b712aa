"""A socket's turns: at most N of its queries and mutations execute at once (PROTOCOL.md
"Overload"), the others wait in arrival order. asyncio.Semaphore does that for tasks;
these turns can also be taken without awaiting (`try_take`), for a position report
answered from its batch, which has no task to wait in (taxi/transport/live/operations.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress


class Turns:
    __slots__ = ("_waiters", "free")

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        """A turn now, if one is free and nobody waits for one before us."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # handed over just as we were cancelled: pass it on
            else:
                with suppress(ValueError):
                    self._waiters.remove(turn)
            raise

    def give(self) -> None:
        """A turn ends: straight to the first waiter, else free."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1
