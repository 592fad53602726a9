"""A connection in many channels closes while the cluster outbox is full (over the real
Redis): its USER_LEFT envelopes are dropped, and the other node used to list it as a
ghost for good. Now the node publishes its state of every channel that lost envelopes
once the outbox drains, so the other node drops the user."""

from __future__ import annotations

import asyncio
import uuid

from pondsocket import JoinContext, PondOptions, PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.redis import RedisPubSub
from pondsocket.testing import TestClient

CHANNELS = 300


def node(bus: RedisPubSub, cluster: ClusterOptions) -> PondSocket:
    # The channel limit is raised on purpose: this is the attack's own setup.
    options = PondOptions(max_channels_per_connection=None, join_rate_limit=None)
    pond = PondSocket(options, pubsub=bus, cluster=cluster)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept()
        ctx.track({"n": 1})

    endpoint.create_channel("/room/:id", join)
    return pond


def ghosts(pond: PondSocket, user_id: str) -> int:
    endpoint = pond.endpoints[0]
    found = 0
    for i in range(CHANNELS):
        channel = endpoint.get_channel(f"/room/{i}")
        found += channel is not None and user_id in channel.all_user_ids
    return found


async def test_a_dropped_leave_does_not_leave_a_ghost(machine_redis: str) -> None:
    namespace = "ghost" + uuid.uuid4().hex[:8]
    buses = [await RedisPubSub.connect(machine_redis) for _ in range(2)]
    a = node(buses[0], ClusterOptions(namespace=namespace, outbox_size=50))
    b = node(buses[1], ClusterOptions(namespace=namespace))
    try:
        watcher = await TestClient(b).connect("/socket")
        for i in range(CHANNELS):
            await watcher.join(f"/room/{i}")
        mallory = await TestClient(a).connect("/socket")
        for i in range(CHANNELS):
            await mallory.join(f"/room/{i}")
            await a.cluster.wait_for_room()
        async with asyncio.timeout(20):
            while ghosts(b, mallory.id) < CHANNELS:
                await asyncio.sleep(0.05)
        dropped = a.cluster.stats.dropped
        await mallory.close()  # 600 envelopes at once into an outbox of 50
        assert a.cluster.stats.dropped > dropped
        async with asyncio.timeout(20):
            while ghosts(b, mallory.id):
                await asyncio.sleep(0.1)
        assert a.cluster.stats.publish_errors == 0
    finally:
        for pond in (a, b):
            await pond.shutdown(timeout=2)
        for bus in buses:
            await bus.close()
