"""The queue to the broker (cluster/outbox.py): backpressure, drops while the bus is down,
shutdown, and the per-topic sequence counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import pytest
from tests.support import eventually
from tests.unit.cluster.nodes import ROOM, Node, settle

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.cluster import outbox as outbox_module
from pondsocket.pubsub import BusState, InMemoryPubSub
from pondsocket.testing import TestClient, TestConnection


async def test_counters_of_closed_rooms_are_bounded_and_a_reopened_room_flows(
    cluster: Callable[[str], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSED_TOPIC_COUNTERS", 5)
    a, b = cluster("a"), cluster("b")
    bob = await b.client("bob")
    visitor = await TestClient(a.pond).connect("/socket")
    for i in range(30):  # short-lived rooms nobody else is in
        await visitor.join(f"/room/short-{i}")
        await visitor.send(f"/room/short-{i}", "all", {})
        await visitor.leave(f"/room/short-{i}")
    assert a.pond.cluster.outbox.numbered_topics <= 5 + 1  # and the heartbeat topic's
    for round_ in range(2):  # the room closes on a between rounds and opens again
        alice = await a.client("alice")
        await eventually(lambda: len(b.channel.all_user_ids) == 2)
        said = {"round": round_}
        await alice.send(ROOM, "all", said)
        await eventually(partial(bob.frames_for, ROOM, payload=said))
        await alice.leave(ROOM)
        await eventually(lambda: len(b.channel.all_user_ids) == 1)
    assert b.pond.cluster.stats.gaps == 0  # a reopened room continues its numbering


class _StalledPubSub(InMemoryPubSub):
    """An in-memory pubsub whose publish() waits while ``flowing`` is clear (a slow broker)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()

    async def publish(self, topic: str, data: bytes) -> None:
        await self.flowing.wait()
        await super().publish(topic, data)


async def _send_many(conn: TestConnection, count: int) -> None:
    for i in range(count):
        await conn.send(ROOM, "all", {"i": i})


async def test_client_input_waits_instead_of_dropping_when_the_broker_lags() -> None:
    bus = _StalledPubSub()
    bus.flowing.set()
    pond = PondSocket(pubsub=bus, cluster=ClusterOptions(outbox_size=20))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_message("all", lambda ctx: ctx.broadcast("all", ctx.payload))
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await settle()
    bus.flowing.clear()  # the broker stops taking messages
    sender = asyncio.create_task(_send_many(conn, 40))
    await asyncio.sleep(0.1)
    assert not sender.done()  # the client is held back...
    assert pond.cluster.stats.dropped == 0  # ...and nothing was lost
    bus.flowing.set()
    await asyncio.wait_for(sender, 5)
    await eventually(lambda: pond.cluster.stats.published >= 40)
    assert pond.cluster.stats.dropped == 0
    assert len(conn.frames_for(ROOM, event="all")) == 40
    await pond.shutdown(timeout=1)
    await bus.close()


async def test_no_backpressure_while_the_bus_is_down() -> None:
    bus = _StalledPubSub()
    bus.flowing.set()
    pond = PondSocket(pubsub=bus, cluster=ClusterOptions(outbox_size=20))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_message("all", lambda ctx: ctx.broadcast("all", ctx.payload))
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await settle()
    bus.flowing.clear()
    sender = asyncio.create_task(_send_many(conn, 40))
    await asyncio.sleep(0.05)
    assert not sender.done()
    bus._notify(BusState.DISCONNECTED)  # the broker is gone: local delivery goes on
    await asyncio.wait_for(sender, 5)
    assert len(conn.frames_for(ROOM, event="all")) == 40
    assert pond.cluster.stats.dropped > 0  # counted; peers resync after the outage
    bus.flowing.set()
    await pond.shutdown(timeout=1)
    await bus.close()


async def test_shutdown_releases_held_input_and_gives_up_on_a_broker_that_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = _StalledPubSub()
    bus.flowing.set()
    pond = PondSocket(pubsub=bus, cluster=ClusterOptions(outbox_size=20))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept())
    lobby.on_message("all", lambda ctx: ctx.broadcast("all", ctx.payload))
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await settle()
    bus.flowing.clear()  # the broker hangs, and nobody has noticed it is gone
    sender = asyncio.create_task(_send_many(conn, 40))
    await asyncio.sleep(0.05)
    assert not sender.done()  # held back by the cluster outbox
    pond.begin_shutdown()
    await asyncio.wait_for(sender, 5)  # released at once: input is no longer held
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pond.shutdown(timeout=10)
    took = loop.time() - started
    assert took < 5, took  # one flush stall (1 s), not the 10 s allowed
    assert any("the broker took no envelope" in r.getMessage() for r in caplog.records)
    assert pond.not_ready() == "shutting down"
    bus.flowing.set()
    await bus.close()
