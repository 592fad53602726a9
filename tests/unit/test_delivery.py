"""A handler working through a backlog shares the event loop with everything else."""

from __future__ import annotations

import asyncio
import itertools
import time

from pondsocket.pubsub.delivery import YIELD_AFTER, QueuedSubscription


async def test_a_backlog_does_not_starve_the_loop() -> None:
    handled: list[float] = []
    ticks: list[float] = []

    async def handler(topic: str, data: bytes) -> None:
        deadline = time.perf_counter() + 0.001  # 1 ms of work that never awaits
        while time.perf_counter() < deadline:
            pass
        handled.append(time.perf_counter())

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    subscription = QueuedSubscription(
        "t.*", handler, queue_size=1000, on_drop=lambda: None, detach=lambda sub: None
    )
    for n in range(100):  # 100 ms of queued work
        subscription.offer("t.x", b"%d" % n)
    other = asyncio.create_task(ticker())
    try:
        async with asyncio.timeout(5):
            while len(handled) < 100:
                await asyncio.sleep(0.01)
    finally:
        other.cancel()
        await subscription.stop()
    # The other task got turns while the backlog was worked off, never waiting much longer
    # than the budget (a tick can land just before a 1 ms message).
    during = [t for t in ticks if handled[0] <= t <= handled[-1]]
    assert len(during) >= 10
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps) < YIELD_AFTER + 0.02
    # Messages were still handled in order, several per turn.
    assert len(during) < 100
