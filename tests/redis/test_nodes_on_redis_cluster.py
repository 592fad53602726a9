"""Two PondSocket nodes joined through a 3-master Redis Cluster, in classic and sharded
pub/sub: presence and broadcasts cross nodes on channels spread over every shard."""

from __future__ import annotations

import asyncio

import pytest

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.redis import RedisPubSub
from pondsocket.testing import TestClient, TestConnection
from tests.redis.servers import RedisCluster
from tests.support import eventually

pytestmark = pytest.mark.slow
ROOMS = [f"/room/{i}" for i in range(6)]  # their topics hash to several slots and shards


def make_node(pubsub: RedisPubSub, node_id: str) -> PondSocket:
    pond = PondSocket(pubsub=pubsub, node_id=node_id, cluster=ClusterOptions(namespace="rc"))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel(
        "/room/:id", lambda ctx: ctx.accept().track({"name": ctx.join_params["name"]})
    )
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    return pond


def names(conn: TestConnection, room: str) -> list[str]:
    frames = conn.frames_for(room, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


@pytest.mark.parametrize("sharded", [False, True], ids=["classic", "sharded"])
async def test_two_nodes_over_redis_cluster(redis_cluster: RedisCluster, sharded: bool) -> None:
    bus_a = await RedisPubSub.connect(redis_cluster.url, sharded=sharded)
    bus_b = await RedisPubSub.connect(redis_cluster.url, sharded=sharded)
    a, b = make_node(bus_a, "a"), make_node(bus_b, "b")
    try:
        alice = await TestClient(a).connect("/socket")
        bob = await TestClient(b).connect("/socket")
        for room in ROOMS:
            await alice.join(room, {"name": "alice"})
        await asyncio.sleep(0.3)  # a's subscriptions are active before b announces itself
        for room in ROOMS:
            await bob.join(room, {"name": "bob"})
        for room in ROOMS:
            await eventually(lambda room=room: names(alice, room) == ["alice", "bob"])
            await eventually(lambda room=room: names(bob, room) == ["alice", "bob"])
            await bob.send(room, "say", {"room": room})
            await eventually(lambda room=room: bool(alice.frames_for(room, event="said")))
        await bob.close()
        for room in ROOMS:
            await eventually(lambda room=room: names(alice, room) == ["alice"])
    finally:
        await a.shutdown(timeout=2)
        await b.shutdown(timeout=2)
        await bus_a.close()
        await bus_b.close()
