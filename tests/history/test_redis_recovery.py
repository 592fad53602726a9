"""History over the machine's real Redis: offsets survive a node restart, and a member
recovers on one node what was broadcast on another."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from redis.asyncio import Redis

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.redis import RedisPubSub
from tests import support
from tests.history.test_recovery import ROOM, joined, numbers, said, signal
from tests.redis.servers import ping
from tests.support import eventually

URL = "redis://127.0.0.1:6379"
Node = Callable[[], AbstractAsyncContextManager[PondSocket]]


@pytest.fixture
def node() -> Node:
    if not ping(6379):
        support.unavailable("no Redis answers on 127.0.0.1:6379", "Redis")
    namespace = "h" + uuid.uuid4().hex[:10]

    @asynccontextmanager
    async def start() -> AsyncIterator[PondSocket]:
        bus = await RedisPubSub.connect(URL)
        pond = PondSocket(pubsub=bus, cluster=ClusterOptions(namespace=namespace))
        endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
        lobby = endpoint.create_channel("/room/:id", lambda ctx: ctx.accept()).history(size=50)
        lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
        await pond.startup()
        try:
            yield pond
        finally:
            await pond.shutdown()
            await bus.close()

    return start


async def test_a_restarted_node_continues_the_offsets(node: Node) -> None:
    async with node() as first:
        alice = await joined(first)
        for n in range(3):
            await alice.send(ROOM, "say", {"n": n})
        await eventually(lambda: len(said(alice)) == 3, "three broadcasts")
        seen = said(alice)[0]["payload"]["_position"]
    async with node() as again:  # a new process would see the same
        bob = await joined(again, {"recover": seen})
        assert signal(bob)["recovered"] is True
        assert numbers(said(bob)) == [1, 2]
        await bob.send(ROOM, "say", {"n": 3})
        await eventually(lambda: len(said(bob)) == 3, "the new one")
        position = said(bob)[-1]["payload"]["_position"]
        assert position == {"offset": 4, "epoch": seen["epoch"]}


async def test_recovering_on_one_node_what_another_sent(node: Node) -> None:
    async with node() as a, node() as b:
        alice = await joined(a)
        bob = await joined(b)
        await asyncio.sleep(0.2)  # both subscribed
        start = {"offset": signal(bob)["offset"], "epoch": signal(bob)["epoch"]}
        for n in range(5):
            await alice.send(ROOM, "say", {"n": n})
        await eventually(lambda: len(said(bob)) == 5, "five on node B")
        carol = await joined(b, {"recover": start})
        assert numbers(said(carol)) == [0, 1, 2, 3, 4]
        assert signal(carol)["missed"] == 5


async def test_a_reconnect_storm_recovers_everyone(node: Node) -> None:
    """150 clients rejoin at once: more than redis-py's pool (100 connections, which fails
    instead of waiting); the joins of a channel share store reads."""
    async with node() as pond:
        alice = await joined(pond)
        start = {"offset": signal(alice)["offset"], "epoch": signal(alice)["epoch"]}
        for n in range(20):
            await alice.send(ROOM, "say", {"n": n})
        await eventually(lambda: len(said(alice)) == 20, "twenty")
        reads_before = pond.history.stats.store_errors
        crowd = await asyncio.gather(*(joined(pond, {"recover": start}) for _ in range(150)))
        assert all(signal(c)["recovered"] for c in crowd)
        assert all(numbers(said(c)) == list(range(20)) for c in crowd)
        assert pond.history.stats.store_errors == reads_before


async def test_a_store_that_lost_its_data_is_an_epoch_change(node: Node) -> None:
    async with node() as pond:
        alice = await joined(pond)
        for n in range(3):
            await alice.send(ROOM, "say", {"n": n})
        await eventually(lambda: len(said(alice)) == 3, "three")
        seen = said(alice)[-1]["payload"]["_position"]
        channel = pond.endpoints[0].get_channel(ROOM)
        assert channel is not None
        client = Redis.from_url(URL)
        try:  # what a Redis restart without persistence does to the stream
            keys = [
                k async for k in client.scan_iter(match="*" + pond.cluster.topic_of(channel) + "*")
            ]
            assert len(keys) == 3  # meta, log and this node's retry marker
            await client.delete(*keys)
        finally:
            await client.aclose()
        bob = await joined(pond, {"recover": seen})
        assert signal(bob)["recovered"] is False
        assert signal(bob)["reason"] == "epoch_changed"
        assert signal(bob)["epoch"] != seen["epoch"]
