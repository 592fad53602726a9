"""The cluster node (cluster/node.py): what it publishes, lookups, resyncs, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support import eventually
from tests.unit.cluster.nodes import ROOM, Node, presence_names, settle

from pondsocket.cluster import EnvelopeType, decode_envelope
from pondsocket.pubsub import BusState, InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker


async def test_a_lone_node_publishes_nothing_until_a_peer_shares_its_bus() -> None:
    solo = Node(None, "solo")
    peer: Node | None = None
    try:
        alice = await solo.client("alice")
        await alice.send(ROOM, "all", {"n": 1})
        await asyncio.sleep(0.15)  # three heartbeat intervals
        # Nothing it publishes could reach anyone: nothing was encoded or sent.
        assert solo.pubsub.alone() and solo.pond.cluster.stats.published == 0
        assert alice.frames_for(ROOM, action="BROADCAST")[-1]["payload"] == {"n": 1}

        # Another node attaches to the same bus: from now on the cluster works as usual.
        peer = Node(solo.pubsub.broker, "peer")
        assert not solo.pubsub.alone()
        bob = await peer.client("bob")
        await eventually(lambda: presence_names(bob) == ["alice", "bob"])
        await eventually(lambda: presence_names(alice) == ["alice", "bob"])
        await alice.send(ROOM, "all", {"n": 2})
        await eventually(lambda: bool(bob.frames_for(ROOM, action="BROADCAST")))
        assert bob.frames_for(ROOM, action="BROADCAST")[-1]["payload"] == {"n": 2}
        assert solo.pond.cluster.stats.published > 0
    finally:
        for node in (solo, peer):
            if node is not None:
                await node.pond.shutdown(timeout=1)
                await node.pubsub.close()


async def test_a_leaving_user_publishes_presence_removed_before_user_left() -> None:
    # Upstream Python nodes drop a remote presence only on PRESENCE_REMOVED (Go sends both).
    broker = InMemoryBroker()
    a = Node(broker, "a")
    seen: list[tuple[EnvelopeType, str | None]] = []
    spy = InMemoryPubSub(broker)

    async def record(topic: str, data: bytes) -> None:
        envelope = decode_envelope(data)
        seen.append((envelope.type, envelope.fields.get("userId")))

    await spy.subscribe("pondsocket:.*", record)
    tracked = await a.client("alice")
    untracked = await a.client()
    await settle()
    seen.clear()
    await tracked.leave(ROOM)
    await untracked.close()
    await settle()
    removals = [
        entry
        for entry in seen
        if entry[0] in (EnvelopeType.PRESENCE_REMOVED, EnvelopeType.USER_LEFT)
    ]
    assert removals == [
        (EnvelopeType.PRESENCE_REMOVED, tracked.id),
        (EnvelopeType.USER_LEFT, tracked.id),
        (EnvelopeType.USER_LEFT, untracked.id),  # nothing to remove: no presence
    ]
    await a.pond.shutdown(timeout=1)
    await spy.close()
    await a.pubsub.close()


async def test_server_side_broadcast_reaches_a_channel_with_no_local_members(
    cluster: Callable[[str], Node],
) -> None:
    a, b = cluster("a"), cluster("b")
    bob = await b.client("bob")
    await settle()
    a.endpoint.broadcast(ROOM, "news", {"n": 1})
    await eventually(lambda: bool(bob.frames_for(ROOM, event="news")))


async def test_fetch_user_of_unknown_user_times_out_to_none(cluster: Callable[[str], Node]) -> None:
    a = cluster("a")
    await a.client("alice")
    assert await a.channel.fetch_user("ghost", timeout=0.1) is None


async def test_bus_reconnect_resyncs_every_channel(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    bob = await b.client("bob")
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    # While a's bus was down, bob left: a never heard. Then a's bus comes back.
    original = a.pubsub.dispatch
    a.pubsub.dispatch = lambda topic, data: False  # type: ignore[method-assign]
    await bob.close()
    await settle()
    a.pubsub.dispatch = original  # type: ignore[method-assign]
    reasons: list[str] = []
    a.pond.cluster.on_resync(lambda channel, reason: reasons.append(reason))
    a.pubsub._notify(BusState.RECONNECTED)
    await eventually(lambda: presence_names(alice) == ["alice"])
    assert "reconnect" in reasons  # (a "gap" resync may follow: b's heartbeats were missed too)


async def test_graceful_shutdown_announces_every_user_leaving(
    cluster: Callable[[str], Node],
) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    await b.client("bob")
    await b.client("carol")
    await eventually(lambda: presence_names(alice) == ["alice", "bob", "carol"])
    await b.pond.shutdown(timeout=1)
    await eventually(lambda: presence_names(alice) == ["alice"])
    assert a.pond.cluster.stats.dead_nodes == 0  # they left; nobody had to time out
