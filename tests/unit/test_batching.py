"""Standalone fan-out writes: one frame per broadcast, one write per connection per pass
of the event loop, and the outgoing bound counting what waits for that write."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN

from pondsocket import OverflowPolicy, PondOptions, PondSocket
from pondsocket.transports.batching import FrameCache, WriteBatcher
from pondsocket.transports.standalone import WebSocketOutlet


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Protocol:
    def __init__(self) -> None:
        self.state = OPEN
        self.extensions: list[Any] = []


class Connection:
    close_timeout = 1.0

    def __init__(self) -> None:
        self.protocol = Protocol()
        self.transport = Transport()


def outlet(options: PondOptions | None = None) -> tuple[WebSocketOutlet, Transport]:
    connection = Connection()
    pond = PondSocket(options)
    made = WebSocketOutlet(
        connection,  # type: ignore[arg-type]
        pond,
        "c1",
        FrameCache(),
        WriteBatcher(),
    )
    return made, connection.transport


def framed(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


async def test_frames_of_one_pass_leave_in_one_write_in_order() -> None:
    out, transport = outlet()
    for n in range(3):
        out.send(b'{"n":%d}' % n)
    assert transport.writes == []  # nothing before the pass ends
    await asyncio.sleep(0)
    assert transport.writes == [b"".join(framed(b'{"n":%d}' % n) for n in range(3))]
    out.send(b"later")
    await asyncio.sleep(0)
    assert transport.writes[1:] == [framed(b"later")]  # a lone frame is not held back


async def test_queued_frames_count_against_the_outgoing_bound() -> None:
    options = PondOptions(outbox_max_bytes=100, overflow_policy=OverflowPolicy.DROP)
    out, transport = outlet(options)
    for _ in range(5):
        out.send(b"x" * 40)  # 42 bytes framed: the third would pass 100
    await asyncio.sleep(0)
    assert transport.writes == [framed(b"x" * 40) * 2]


async def test_a_detached_connection_writes_nothing_queued() -> None:
    out, transport = outlet()
    out.send(b"gone")
    out.detach()
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_batcher_runs_each_flush_once_per_pass() -> None:
    batcher = WriteBatcher()
    calls: list[str] = []
    batcher.defer(lambda: calls.append("a"))
    batcher.defer(lambda: calls.append("b"))
    assert calls == []
    await asyncio.sleep(0)
    assert calls == ["a", "b"]

    # A flush deferred during a pass runs in the next one.
    def defer_d_then_run_c() -> None:
        batcher.defer(lambda: calls.append("d"))
        calls.append("c")

    batcher.defer(defer_d_then_run_c)
    await asyncio.sleep(0)
    assert calls == ["a", "b", "c"]
    await asyncio.sleep(0)
    assert calls == ["a", "b", "c", "d"]


async def test_a_failing_flush_does_not_strand_the_others(caplog: Any) -> None:
    batcher = WriteBatcher()
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    batcher.defer(broken)
    batcher.defer(lambda: calls.append("after"))
    await asyncio.sleep(0)
    assert calls == ["after"]
    assert "flushing a connection's frames failed" in caplog.text
