"""History through a Redis Cluster failover: two nodes (in process, each with its own
RedisPubSub) on a 3-master cluster with one replica each (``cluster-node-timeout`` 2 s), a
member on each sending 100 msg/s into a channel with history and one without. The master
holding the history channel's keys is SIGKILLed; its replica takes over. Figures are
printed (``-s``)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from pondsocket.pubsub.redis import RedisPubSub
from tests.history.traffic import HISTORY, build, lossless, members, under_traffic
from tests.redis.servers import RedisCluster

pytestmark = pytest.mark.slow


async def test_master_failover_loses_nothing_on_history_channels(redis_binary: str) -> None:
    with RedisCluster(replicas=1) as cluster:
        cluster.wait_replicas_synced()
        buses = [await RedisPubSub.connect(cluster.url) for _ in "ab"]
        ponds = [build(bus) for bus in buses]
        try:
            alice, bob = await members(ponds)
            room = ponds[0].endpoints[0].get_channel(HISTORY)
            assert room is not None
            client = buses[0].client
            assert isinstance(client, ClusterClient)
            owner = client.get_node_from_key("{" + ponds[0].cluster.topic_of(room) + "}")
            assert owner is not None

            async def failover() -> None:
                cluster.server(int(owner.port)).kill()
                await asyncio.sleep(8.0)  # the replica takes over within ~2-5 s

            sent = await under_traffic(alice, bob, failover)
            figures = await lossless(alice, bob, sent)
            print(f"\nRedis Cluster master failover under 2 x 100 msg/s: {figures}")
        finally:
            for pond in ponds:
                await pond.shutdown()
            for bus in buses:
                await bus.close()
