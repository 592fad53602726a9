"""Two PondSocket nodes joined through a 3-master Redis Cluster, in classic and sharded
pub/sub (the shared scenario of ``tests/nodes_suite.py``), on channels spread over every
shard."""

from __future__ import annotations

import pytest

from pondsocket.pubsub.redis import RedisPubSub
from tests.nodes_suite import two_nodes
from tests.redis.servers import RedisCluster

pytestmark = pytest.mark.slow

ROOMS = [f"/room/{i}" for i in range(6)]  # their topics hash to several slots and shards


@pytest.mark.parametrize("sharded", [False, True], ids=["classic", "sharded"])
async def test_two_nodes_over_redis_cluster(redis_cluster: RedisCluster, sharded: bool) -> None:
    bus_a = await RedisPubSub.connect(redis_cluster.url, sharded=sharded)
    bus_b = await RedisPubSub.connect(redis_cluster.url, sharded=sharded)
    try:
        await two_nodes(bus_a, bus_b, ROOMS, namespace="rc")
    finally:
        await bus_a.close()
        await bus_b.close()
