"""History over NATS JetStream through a NATS restart: two nodes (in process, each with
its own NatsPubSub) on a throwaway nats-server with JetStream on disk, a member on each
sending 100 msg/s into a channel with history and one without; the server is SIGKILLed
for 3 s and restarted on its port. Figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pondsocket import PondSocket
from pondsocket.pubsub.nats import NatsPubSub
from pondsocket.testing import Frame, TestClient, TestConnection
from tests.nats.conftest import unique_prefix
from tests.nats.servers import NatsServer
from tests.nats.test_nats_faults import FAST
from tests.support import eventually

pytestmark = pytest.mark.slow

HISTORY, PLAIN = "/history/1", "/plain/1"


def build(bus: NatsPubSub) -> PondSocket:
    pond = PondSocket(pubsub=bus)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    for pattern, history in (("/history/:id", True), ("/plain/:id", False)):
        lobby = endpoint.create_channel(pattern, lambda ctx: ctx.accept())
        if history:
            lobby.history(size=5000, ttl=600)
        lobby.on_message("say", lambda ctx: ctx.broadcast("say", ctx.payload))
    return pond


def said(conn: TestConnection, channel: str, sender: str) -> list[int]:
    frames: list[Frame] = conn.frames_for(channel, event="say")
    return [f["payload"]["n"] for f in frames if f["payload"]["from"] == sender]


async def chatter(conn: TestConnection, name: str, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        for channel in (HISTORY, PLAIN):
            await conn.send(channel, "say", {"from": name, "n": sent})
        sent += 1
        await asyncio.sleep(0.01)
    return sent


async def test_nats_restart_loses_nothing_on_history_channels(
    nats_binary: str, tmp_path: Path
) -> None:
    server = NatsServer(None, "-js", "-sd", str(tmp_path))
    server.start()
    prefix = unique_prefix()
    buses: list[NatsPubSub] = []
    ponds: list[PondSocket] = []
    try:
        for _ in range(2):
            bus = await NatsPubSub.connect(server.url, subject_prefix=prefix, **FAST)
            buses.append(bus)
            pond = build(bus)
            await pond.startup()
            ponds.append(pond)
        alice = await TestClient(ponds[0]).connect("/socket")
        bob = await TestClient(ponds[1]).connect("/socket")
        for conn in (alice, bob):
            for channel in (HISTORY, PLAIN):
                assert (await conn.join(channel))["event"] == "ACKNOWLEDGE"
        await asyncio.sleep(0.5)  # both nodes subscribed
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(chatter(alice, "alice", stop)),
            asyncio.create_task(chatter(bob, "bob", stop)),
        ]
        try:
            await asyncio.sleep(1.0)
            server.kill()
            await asyncio.sleep(3.0)
            await server.astart()
            await asyncio.sleep(3.0)
        finally:
            stop.set()
            sent_alice, sent_bob = await asyncio.gather(*tasks)

        def complete() -> bool:
            return (
                len(said(bob, HISTORY, "alice")) >= sent_alice
                and len(said(alice, HISTORY, "bob")) >= sent_bob
            )

        try:
            await eventually(complete, "every history message on the other node", timeout=30)
        except AssertionError:
            missing = {
                "a->b": sorted(set(range(sent_alice)) - set(said(bob, HISTORY, "alice")))[:20],
                "b->a": sorted(set(range(sent_bob)) - set(said(alice, HISTORY, "bob")))[:20],
            }
            lost = [
                f["payload"]
                for c in (alice, bob)
                for f in c.frames_for(HISTORY)
                if f["event"] == "continuity_lost"
            ]
            raise AssertionError(f"history messages missing: {missing}; notices {lost}") from None
        plain = (
            sent_alice - len(set(said(bob, PLAIN, "alice"))),
            sent_bob - len(set(said(alice, PLAIN, "bob"))),
        )
        print(
            f"\nNATS restart (3 s) under 2 x 100 msg/s: without history {plain[0]} of"
            f" {sent_alice} lost a->b, {plain[1]} of {sent_bob} b->a; with history 0 lost"
        )
        assert said(bob, HISTORY, "alice") == list(range(sent_alice))
        assert said(alice, HISTORY, "bob") == list(range(sent_bob))
    finally:
        for pond in ponds:
            await pond.shutdown()
        for bus in buses:
            await bus.close()
        server.kill()
