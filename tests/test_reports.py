"""The position reports' batch (taxi/domain/reports.py) answered in slices: in order, every
report, the loop turning between slices, and nobody left hanging when it stops."""

from __future__ import annotations

import asyncio
import time

import pytest
from broadcaster import Broadcast

from taxi.domain import reports
from taxi.domain.events import Publisher
from taxi.domain.positions import Fix, MemoryPositions
from taxi.domain.reports import Outcome, Reports
from taxi.domain.routes import Estimator

DRIVERS = 100


def fix() -> Fix:
    return Fix(52.52, 13.40, None, time.time())


async def test_a_batch_is_answered_in_order_with_the_loop_turning_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reports, "SLICE", 0.0)  # the loop turns after every answer
    heard: list[int] = []
    seen_between: list[int] = []
    async with Broadcast("memory://") as broadcast:
        batch = Reports(
            positions=MemoryPositions(estimator=Estimator(), arrival_meters=50),
            events=Publisher(broadcast, prefix="test"),
        )
        for driver in range(1, DRIVERS + 1):

            def done(outcome: Outcome | None, error: BaseException | None, d: int = driver) -> None:
                assert outcome is not None and error is None
                heard.append(d)

            batch.submit(driver_id=driver, fix=fix(), online=True, done=done)

        async def watch() -> None:
            while len(heard) < DRIVERS:
                seen_between.append(len(heard))
                await asyncio.sleep(0)

        await asyncio.wait_for(watch(), 10)
    assert heard == list(range(1, DRIVERS + 1))
    # Another task ran while the batch was being answered, not only before and after it.
    assert any(0 < n < DRIVERS for n in seen_between), seen_between


async def test_a_batch_stopped_while_answered_tells_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reports, "SLICE", 0.0)
    outcomes: list[str] = []
    first = asyncio.Event()
    async with Broadcast("memory://") as broadcast:
        batch = Reports(
            positions=MemoryPositions(estimator=Estimator(), arrival_meters=50),
            events=Publisher(broadcast, prefix="test"),
        )
        for driver in range(1, DRIVERS + 1):

            def done(outcome: Outcome | None, error: BaseException | None) -> None:
                outcomes.append("ok" if outcome is not None else type(error).__name__)
                first.set()

            batch.submit(driver_id=driver, fix=fix(), online=True, done=done)
        await asyncio.wait_for(first.wait(), 10)
        flusher = batch._flusher
        assert flusher is not None
        flusher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flusher
    assert len(outcomes) == DRIVERS
    answered = outcomes.count("ok")
    assert 0 < answered < DRIVERS
    assert outcomes[answered:] == ["CancelledError"] * (DRIVERS - answered)
