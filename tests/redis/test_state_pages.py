"""A room whose state is over the bus's 1 MiB message limit still reaches a node that
joins later (over the real Redis): the STATE_RESPONSE goes out in pages."""

from __future__ import annotations

import asyncio
import uuid

from pondsocket import JoinContext, PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.redis import RedisPubSub
from pondsocket.testing import TestClient, TestConnection

ROOM = "/room/big"


def node(pubsub: RedisPubSub, cluster: ClusterOptions) -> PondSocket:
    pond = PondSocket(pubsub=pubsub, cluster=cluster)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept(ctx.join_params.get("assigns"))
        ctx.track({"name": ctx.join_params["name"]})

    endpoint.create_channel("/room/:id", join)
    return pond


def listed(conn: TestConnection) -> int:
    frames = conn.frames_for(ROOM, action="PRESENCE")
    return len(frames[-1]["payload"]["presence"]) if frames else 0


async def test_a_room_state_over_the_bus_limit_reaches_a_late_node(machine_redis: str) -> None:
    cluster = ClusterOptions(namespace="pages" + uuid.uuid4().hex[:8])
    pubsubs = [await RedisPubSub.connect(machine_redis) for _ in range(2)]
    a, b = (node(pubsub, cluster) for pubsub in pubsubs)
    try:
        # 280 members with 4 KB of assigns each: 1.15 MB of state, over RedisPubSub's
        # 1 MiB limit; one STATE_RESPONSE failed to publish and b saw an empty room.
        for i in range(280):
            conn = await TestClient(a).connect("/socket")
            ack = await conn.join(ROOM, {"name": f"u{i}", "assigns": {"pad": "x" * 4000}})
            assert ack["event"] == "ACKNOWLEDGE"
        late = await TestClient(b).connect("/socket")
        await late.join(ROOM, {"name": "late"})
        async with asyncio.timeout(10):
            while listed(late) != 281:
                await asyncio.sleep(0.05)
        channel = b.endpoints[0].get_channel(ROOM)
        assert channel is not None
        assert len(channel.all_user_ids) == 281
        assert a.cluster.stats.publish_errors == 0
    finally:
        for pond in (a, b):
            await pond.shutdown(timeout=2)
        for pubsub in pubsubs:
            await pubsub.close()
