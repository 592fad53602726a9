"""Flow control's wait (core/flow.py) against fake outlets: it ends when the queues drain,
closes a stuck one (or, under the drop policy, stops waiting for it), stops waiting for
one that reads too slowly, and only the task handling a client's message is held."""

from __future__ import annotations

import asyncio

import pytest

from pondsocket import PondOptions
from pondsocket.core.flow import STUCK_REASON, FlowState, current_sender, hold_back, note_backlog
from pondsocket.errors import UsageError

SOFT = 1000
TIMEOUT = 0.1  # outbox_stuck_timeout of these tests


class FakeOutlet:
    """A queue the test drains by hand (``drain``) or lets a task drain at a pace."""

    def __init__(self, backlog: int = 0) -> None:
        self.flow = FlowState(SOFT)
        self.queued = backlog
        self.taken = 0
        self.closed: tuple[int, str] | None = None

    @property
    def closing(self) -> bool:
        return self.closed is not None

    @property
    def pending_bytes(self) -> int:
        return self.queued

    def written(self) -> int:
        return self.taken

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def drain(self, n: int) -> None:
        n = min(n, self.queued)
        self.queued -= n
        self.taken += n


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def test_a_queue_under_its_mark_holds_nobody() -> None:
    outlet = FakeOutlet(SOFT)  # at the mark, not above it
    assert not await hold_back({outlet}, TIMEOUT, True, Counter())


async def test_the_wait_ends_once_the_queue_is_under_half_the_mark() -> None:
    outlet = FakeOutlet(3 * SOFT)
    waiting = asyncio.create_task(hold_back({outlet}, 10.0, True, Counter()))
    await asyncio.sleep(0.02)
    outlet.drain(2 * SOFT)  # at the mark: still waiting (it resumes under half of it)
    await asyncio.sleep(0.02)
    assert not waiting.done()
    outlet.drain(SOFT // 2)
    assert await asyncio.wait_for(waiting, 1.0) is True
    assert outlet.closed is None and outlet.flow.held_since is None


async def test_a_stuck_queue_is_closed_4008_and_counted() -> None:
    stuck, healthy = FakeOutlet(2 * SOFT), FakeOutlet(2 * SOFT)
    stuck_count = Counter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(hold_back({stuck, healthy}, TIMEOUT, True, stuck_count))
    await asyncio.sleep(0.01)
    healthy.drain(2 * SOFT)
    assert await asyncio.wait_for(waiting, 2.0)
    assert loop.time() - started >= TIMEOUT
    assert stuck.closed == (4008, STUCK_REASON)
    assert healthy.closed is None
    assert stuck_count.count == 1


async def test_under_the_drop_policy_a_stuck_queue_stays_open_and_is_not_waited_for() -> None:
    stuck = FakeOutlet(2 * SOFT)
    stuck_count = Counter()
    assert await asyncio.wait_for(hold_back({stuck}, TIMEOUT, False, stuck_count), 2.0)
    assert stuck.closed is None and stuck.flow.released and stuck_count.count == 1
    # Released: the next sender does not wait for it...
    assert not await hold_back({stuck}, TIMEOUT, False, stuck_count)
    # ...until it has drained under its mark; then it holds senders back again.
    stuck.drain(2 * SOFT)
    assert not await hold_back({stuck}, TIMEOUT, False, stuck_count)
    assert not stuck.flow.released
    stuck.queued = 2 * SOFT
    waiting = asyncio.create_task(hold_back({stuck}, 10.0, False, stuck_count))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    stuck.drain(2 * SOFT)
    assert await asyncio.wait_for(waiting, 1.0)


async def test_a_queue_that_reads_too_slowly_is_not_waited_for_past_the_timeout() -> None:
    slow = FakeOutlet(100 * SOFT)
    stuck_count = Counter()

    async def trickle() -> None:
        while True:
            slow.drain(1)
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(hold_back({slow}, TIMEOUT, True, stuck_count), 2.0)
    finally:
        reader.cancel()
    assert slow.closed is None and slow.flow.released  # progressing: not stuck
    assert stuck_count.count == 0


async def test_a_closing_queue_holds_nobody() -> None:
    outlet = FakeOutlet(2 * SOFT)
    waiting = asyncio.create_task(hold_back({outlet}, 10.0, True, Counter()))
    await asyncio.sleep(0.01)
    outlet.close(1001, "going away")
    assert await asyncio.wait_for(waiting, 1.0)


class Recorder:
    def __init__(self) -> None:
        self.held: list[object] = []

    def held_back_by(self, outlet: object) -> None:
        self.held.append(outlet)


async def test_only_the_task_handling_a_clients_message_is_told() -> None:
    outlet = FakeOutlet()
    note_backlog(outlet)  # server code, a peer node's message: nobody to slow down
    sender = Recorder()
    token = current_sender.set(sender)
    try:
        note_backlog(outlet)
    finally:
        current_sender.reset(token)
    note_backlog(outlet)
    assert sender.held == [outlet]


def test_options() -> None:
    assert PondOptions().outbox_soft_bytes == 1024 * 1024  # a quarter of 4 MiB
    assert PondOptions(outbox_soft_watermark=None).outbox_soft_bytes is None
    assert FlowState(None).soft > 1 << 60  # off: no queue is ever above it
    for bad in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(UsageError):
            PondOptions(outbox_soft_watermark=bad)
    with pytest.raises(UsageError):
        PondOptions(outbox_stuck_timeout=0)
