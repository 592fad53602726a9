"""The server-wide keep-alive sweep: every connection pinged each interval, only the
silent ones closed, and the loop yields while sweeping many connections."""

from __future__ import annotations

import asyncio

import pytest

from pondsocket.transports.keepalive import keepalive_loop


class Peer:
    def __init__(self, *, answers: bool = True, closing: bool = False, broken: bool = False):
        self.answers = answers
        self.closing = closing
        self.broken = broken
        self.pings = 0
        self.closed: tuple[int, str] | None = None

    async def ping(self) -> asyncio.Future[float] | None:
        if self.closing:
            return None
        self.pings += 1
        if self.broken:
            raise RuntimeError("transport gone wrong")
        pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.answers:
            asyncio.get_running_loop().call_soon(pong.set_result, 0.0)
        return pong

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_silent_peers_are_closed_with_1011_and_others_kept() -> None:
    live, silent, closing = Peer(), Peer(answers=False), Peer(closing=True)
    peers = {live, silent, closing}
    task = asyncio.create_task(keepalive_loop(lambda: peers, 0.02, 0.05))
    try:
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    assert live.pings >= 3 and live.closed is None
    assert silent.closed == (1011, "keepalive ping timeout")
    assert closing.pings == 0 and closing.closed is None


async def test_no_timeout_means_ping_only() -> None:
    silent = Peer(answers=False)
    task = asyncio.create_task(keepalive_loop(lambda: [silent], 0.01, None))
    try:
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert silent.pings >= 2 and silent.closed is None


async def test_a_large_sweep_lets_other_work_run() -> None:
    peers = [Peer() for _ in range(2000)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    task = asyncio.create_task(keepalive_loop(lambda: peers, 0.0, None))
    try:
        while peers[-1].pings == 0:
            await asyncio.sleep(0)
        ticks_at_first_sweep = ticks
    finally:
        task.cancel()
        other.cancel()
    # 2000 pings took several steps, and the other task ran between them.
    assert ticks_at_first_sweep >= 3


async def test_a_failing_ping_does_not_stop_the_sweep(caplog: pytest.LogCaptureFixture) -> None:
    broken, live = Peer(broken=True), Peer()
    task = asyncio.create_task(keepalive_loop(lambda: [broken, live], 0.01, 0.05))
    try:
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert broken.pings >= 2 and live.pings >= 2 and live.closed is None
    assert "keep-alive ping failed" in caplog.text
