"""Heartbeats and which peers are alive (cluster/liveness.py), seen from a node's clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support import eventually
from tests.unit.cluster.nodes import FAST, ROOM, Node, foreign_envelope, presence_names, settle

from pondsocket.cluster import EnvelopeType, decode_envelope
from pondsocket.pubsub import InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker
from pondsocket.testing import TestClient


def test_one_heartbeat_per_node_whatever_the_channel_count() -> None:
    async def scenario() -> list[str]:
        broker = InMemoryBroker()
        node = Node(broker, "a")
        spy = InMemoryPubSub(broker)
        beats: list[str] = []

        async def record(topic: str, data: bytes) -> None:
            beats.append(decode_envelope(data).source_node_id)

        await spy.subscribe(node.pond.cluster.layout.heartbeat(), record)
        conn = await TestClient(node.pond).connect("/socket")
        for i in range(5):
            await conn.join(f"/room/{i}", {})
        await asyncio.sleep(0.22)  # about four heartbeat intervals
        await node.pond.shutdown(timeout=1)
        await spy.close()
        await node.pubsub.close()
        return beats

    beats = asyncio.run(scenario())
    assert set(beats) == {"a"}
    assert len(beats) <= 8  # 5 channels x 4 intervals would be 20


async def test_dead_node_users_leave_with_leave_frames(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    await b.client("bob")
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    # b dies without a word: its tasks stop and nothing more is published.
    for task in b.pond.cluster._tasks:
        task.cancel()
    await b.pubsub.close()
    await eventually(lambda: presence_names(alice) == ["alice"], timeout=3)
    assert alice.frames_for(ROOM, action="PRESENCE")[-1]["event"] == "LEAVE"
    assert a.pond.cluster.stats.dead_nodes == 1


# The timeout comes from NodeRegistry (cluster/tracking.py); declaring the peer dead is liveness.
async def test_a_peer_that_advertises_no_timeout_is_declared_dead_within_ours() -> None:
    # JS nodes heartbeat with {nodeId} only; they used to get upstream's 90 s here.
    broker = InMemoryBroker()
    node = Node(broker, "a")
    alice = await node.client("alice")
    await settle()
    js_node = InMemoryPubSub(broker)
    cluster = node.pond.cluster
    topic = cluster.topic_of(node.channel)
    joined = foreign_envelope(
        EnvelopeType.USER_JOINED,
        node,
        "js-node",
        userId="js-user",
        presence={"name": "js"},
        assigns={},
    )
    await js_node.publish(topic, joined)
    for _ in range(4):  # a fast peer: every 0.05 s, well inside our 0.2 s
        beat = foreign_envelope(EnvelopeType.NODE_HEARTBEAT, node, "js-node", nodeId="js-node")
        await js_node.publish(cluster.layout.heartbeat(), beat)
        await asyncio.sleep(0.05)
    await eventually(lambda: presence_names(alice) == ["alice", "js"])
    assert cluster.registry.timeout_of("js-node") == FAST.heartbeat_timeout
    # It dies (SIGKILL, or SIGTERM: JS publishes no USER_LEFT then).
    await eventually(lambda: presence_names(alice) == ["alice"], timeout=2)
    assert alice.frames_for(ROOM, action="PRESENCE")[-1]["event"] == "LEAVE"
    assert cluster.stats.dead_nodes == 1
    await node.pond.shutdown(timeout=1)
    await js_node.close()
    await node.pubsub.close()


async def test_node_declared_dead_too_early_is_resynced_when_it_returns(
    cluster: Callable[[str], Node],
) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    await b.client("bob")
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    reasons: list[str] = []
    a.pond.cluster.on_resync(lambda channel, reason: reasons.append(reason))
    original = a.pubsub.dispatch
    a.pubsub.dispatch = lambda topic, data: False  # type: ignore[method-assign]  # a partition
    await eventually(lambda: presence_names(alice) == ["alice"])  # b declared dead
    a.pubsub.dispatch = original  # type: ignore[method-assign]
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    assert "node_returned" in reasons
