"""History through a Redis Cluster failover: two nodes (in process, each with its own
RedisPubSub) on a 3-master cluster with one replica each (``cluster-node-timeout`` 2 s), a
member on each sending 100 msg/s into a channel with history and one without. The master
holding the history channel's keys (and its topic) is SIGKILLed; its replica takes over.
Figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from pondsocket import PondSocket
from pondsocket.pubsub.redis import RedisPubSub
from pondsocket.testing import TestClient, TestConnection
from tests.redis.servers import RedisCluster
from tests.support import eventually

pytestmark = pytest.mark.slow

HISTORY, PLAIN = "/history/1", "/plain/1"


def build(bus: RedisPubSub) -> PondSocket:
    pond = PondSocket(pubsub=bus)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    for pattern, history in (("/history/:id", True), ("/plain/:id", False)):
        lobby = endpoint.create_channel(pattern, lambda ctx: ctx.accept())
        if history:
            lobby.history(size=5000, ttl=600)
        lobby.on_message("say", lambda ctx: ctx.broadcast("say", ctx.payload))
    return pond


def said(conn: TestConnection, channel: str, sender: str) -> list[int]:
    return [
        f["payload"]["n"]
        for f in conn.frames_for(channel, event="say")
        if f["payload"]["from"] == sender
    ]


async def chatter(conn: TestConnection, name: str, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        for channel in (HISTORY, PLAIN):
            await conn.send(channel, "say", {"from": name, "n": sent})
        sent += 1
        await asyncio.sleep(0.01)
    return sent


async def test_master_failover_loses_nothing_on_history_channels(redis_binary: str) -> None:
    with RedisCluster(replicas=1) as cluster:
        cluster.wait_replicas_synced()
        buses = [await RedisPubSub.connect(cluster.url) for _ in range(2)]
        ponds = [build(bus) for bus in buses]
        try:
            for pond in ponds:
                await pond.startup()
            alice = await TestClient(ponds[0]).connect("/socket")
            bob = await TestClient(ponds[1]).connect("/socket")
            for conn in (alice, bob):
                for channel in (HISTORY, PLAIN):
                    assert (await conn.join(channel))["event"] == "ACKNOWLEDGE"
            await asyncio.sleep(0.5)
            room = ponds[0].endpoints[0].get_channel(HISTORY)
            assert room is not None
            client = buses[0].client
            assert isinstance(client, ClusterClient)
            owner = client.get_node_from_key("{" + ponds[0].cluster.topic_of(room) + "}")
            assert owner is not None
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(chatter(alice, "alice", stop)),
                asyncio.create_task(chatter(bob, "bob", stop)),
            ]
            try:
                await asyncio.sleep(1.0)
                killed = time.monotonic()
                cluster.server(int(owner.port)).kill()
                await asyncio.sleep(8.0)  # failover takes ~2-5 s
            finally:
                stop.set()
                sent = await asyncio.gather(*tasks)

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
            plain = (
                sent[0] - len(set(said(bob, PLAIN, "alice"))),
                sent[1] - len(set(said(alice, PLAIN, "bob"))),
            )
            print(
                f"\nRedis Cluster master failover ({time.monotonic() - killed:.1f} s of the"
                f" test after the kill) under 2 x 100 msg/s: without history {plain[0]} of"
                f" {sent[0]} lost a->b, {plain[1]} of {sent[1]} b->a; with history 0 lost"
            )
            assert said(bob, HISTORY, "alice") == list(range(sent[0]))
            assert said(alice, HISTORY, "bob") == list(range(sent[1]))
        finally:
            for pond in ponds:
                await pond.shutdown()
            for bus in buses:
                await bus.close()
