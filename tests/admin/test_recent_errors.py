"""The bounded ring of a server's last handler errors and refusals (``metrics.recent_errors``),
which the admin page lists."""

from __future__ import annotations

import asyncio

import pytest

from pondsocket import PondSocket
from pondsocket.core.contexts import EventContext, JoinContext, LeaveContext
from pondsocket.core.recent import RecentErrors
from pondsocket.testing import ConnectionDeclined, TestClient
from tests.support import eventually


def test_ring_is_bounded_and_coalesces_repeats() -> None:
    clock = iter(range(1000))
    ring = RecentErrors(3, clock=lambda: float(next(clock)))
    ring.record("event handler", "room event 'x'", ValueError("boom"))
    ring.record("event handler", "room event 'x'", ValueError("boom"))  # the same again
    assert [(e.error, e.count, e.time) for e in ring.entries()] == [("ValueError: boom", 2, 1.0)]
    for n in range(4):
        ring.record("join handler", f"room{n}", RuntimeError())
    assert [e.where for e in ring.entries()] == ["room1", "room2", "room3"]  # oldest gone
    assert ring.entries()[0].error == "RuntimeError"
    ring.record("x" * 1000, "y", "z" * 1000)  # client-chosen text is cut
    assert len(ring.entries()[-1].kind) == len(ring.entries()[-1].error) == 300


async def test_handler_errors_and_refusals_are_recorded() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())

    @lobby.on_message("boom")
    def boom(ctx: EventContext) -> None:
        raise ValueError("bad payload")

    @lobby.on_leave()
    async def leave(ctx: LeaveContext) -> None:
        raise KeyError("gone")

    @endpoint.create_channel("/broken")
    def broken(ctx: JoinContext) -> None:
        raise RuntimeError("join failed")

    client = TestClient(pond)
    conn = await client.connect("/socket")
    await conn.join("/room/1")
    await conn.request("/room/1", "boom")
    await conn.join("/broken")
    await conn.leave("/room/1")
    ring = pond.metrics.recent_errors
    await eventually(lambda: len(ring) == 3, "three errors recorded")
    kinds = [(e.kind, e.where, e.error) for e in ring.entries()]
    assert kinds == [
        ("event handler", "/room/1 event 'boom'", "ValueError: bad payload"),
        ("join handler", "/broken", "RuntimeError: join failed"),
        ("leave handler", "", "KeyError: 'gone'"),
    ]
    assert pond.metrics.snapshot()["handler_errors"] == 2  # the ring is not a counter
    await conn.close()
    await asyncio.sleep(0)


async def test_origin_refusals_are_recorded() -> None:
    pond = PondSocket()
    pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    client = TestClient(pond)
    with pytest.raises(ConnectionDeclined):
        await client.connect("/socket", headers={"origin": "https://evil.example", "host": "a"})
    [entry] = pond.metrics.recent_errors.entries()
    assert (entry.kind, entry.where, entry.error) == (
        "origin refused",
        "/socket",
        "'https://evil.example'",
    )
