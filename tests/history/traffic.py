"""Traffic for the broker fault tests of channel history: two nodes, a member on each
sending 100 msg/s into a channel with history and one without, and the loss counts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pondsocket import PondSocket
from pondsocket.pubsub.base import PubSub
from pondsocket.testing import TestClient, TestConnection
from tests.support import eventually

HISTORY, PLAIN = "/history/1", "/plain/1"


def build(bus: PubSub) -> PondSocket:
    pond = PondSocket(pubsub=bus)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    for pattern, history in (("/history/:id", True), ("/plain/:id", False)):
        lobby = endpoint.create_channel(pattern, lambda ctx: ctx.accept())
        if history:
            lobby.history(size=5000, ttl=600)
        lobby.on_message("say", lambda ctx: ctx.broadcast("say", ctx.payload))
    return pond


async def members(ponds: list[PondSocket]) -> tuple[TestConnection, TestConnection]:
    """``alice`` on the first node and ``bob`` on the second, in both channels."""
    for pond in ponds:
        await pond.startup()
    alice = await TestClient(ponds[0]).connect("/socket")
    bob = await TestClient(ponds[1]).connect("/socket")
    for conn in (alice, bob):
        for channel in (HISTORY, PLAIN):
            assert (await conn.join(channel))["event"] == "ACKNOWLEDGE"
    await asyncio.sleep(0.5)  # both nodes subscribed
    return alice, bob


def said(conn: TestConnection, channel: str, sender: str) -> list[int]:
    return [
        f["payload"]["n"]
        for f in conn.frames_for(channel, event="say")
        if f["payload"]["from"] == sender
    ]


async def chatter(conn: TestConnection, name: str, stop: asyncio.Event) -> int:
    """Send into both channels every 10 ms until ``stop``; how many were sent."""
    sent = 0
    while not stop.is_set():
        for channel in (HISTORY, PLAIN):
            await conn.send(channel, "say", {"from": name, "n": sent})
        sent += 1
        await asyncio.sleep(0.01)
    return sent


async def lossless(alice: TestConnection, bob: TestConnection, sent: list[int]) -> str:
    """Assert the history channel got every message across, in order, once; returns the
    plain channel's loss for the figures."""

    def complete() -> bool:
        return (
            len(said(bob, HISTORY, "alice")) >= sent[0]
            and len(said(alice, HISTORY, "bob")) >= sent[1]
        )

    try:
        await eventually(complete, "every history message on the other node", timeout=30)
    except AssertionError:
        missing = {
            "a->b": sorted(set(range(sent[0])) - set(said(bob, HISTORY, "alice")))[:20],
            "b->a": sorted(set(range(sent[1])) - set(said(alice, HISTORY, "bob")))[:20],
        }
        notices = [
            f["payload"]
            for c in (alice, bob)
            for f in c.frames_for(HISTORY, event="continuity_lost")
        ]
        raise AssertionError(f"missing: {missing}; notices: {notices}") from None
    assert said(bob, HISTORY, "alice") == list(range(sent[0]))
    assert said(alice, HISTORY, "bob") == list(range(sent[1]))
    lost = (
        sent[0] - len(set(said(bob, PLAIN, "alice"))),
        sent[1] - len(set(said(alice, PLAIN, "bob"))),
    )
    return (
        f"without history {lost[0]} of {sent[0]} lost a->b, {lost[1]} of {sent[1]} b->a;"
        " with history 0 lost"
    )


async def under_traffic(
    alice: TestConnection, bob: TestConnection, fault: Callable[[], Awaitable[None]]
) -> list[int]:
    """Chatter from both members for 1 s, then while ``await fault()`` runs; the counts."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(chatter(alice, "alice", stop)),
        asyncio.create_task(chatter(bob, "bob", stop)),
    ]
    try:
        await asyncio.sleep(1.0)
        await fault()
    finally:
        stop.set()
        sent = list(await asyncio.gather(*tasks))
    return sent
