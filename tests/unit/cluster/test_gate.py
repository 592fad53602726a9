"""The inbound gate (cluster/gate.py): duplicates, our own echo, sequence gaps."""

from __future__ import annotations

from collections.abc import Callable

from tests.support import eventually
from tests.unit.cluster.nodes import ROOM, Node, presence_names, settle

from pondsocket.cluster import Envelope, EnvelopeType, decode_envelope
from pondsocket.pubsub import InMemoryPubSub


async def test_duplicates_and_own_messages_are_ignored(cluster: Callable[[str], Node]) -> None:
    a = cluster("a")
    alice = await a.client("alice")
    await settle()  # the channel's broker subscription is made in the background
    spy = InMemoryPubSub(a.pubsub.broker)
    topic = a.pond.cluster.topic_of(a.channel)
    message = Envelope(
        EnvelopeType.USER_MESSAGE,
        "z",
        "socket",
        ROOM,
        {
            "fromUserId": "CHANNEL",
            "event": "dup",
            "payload": {},
            "requestId": "r",
            "recipientDescriptor": "ALL_USERS",
        },
    )
    data = message.encode()
    await spy.publish(topic, data)
    await spy.publish(topic, data)
    await eventually(lambda: a.pond.cluster.stats.duplicates == 1)
    assert len(alice.frames_for(ROOM, event="dup")) == 1
    await spy.close()


# The gate detects the gap; the node resyncs (cluster/node.py).
async def test_sequence_gap_triggers_resync_and_drops_ghosts(
    cluster: Callable[[str], Node],
) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    bob = await b.client("bob")
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    resyncs: list[tuple[str, str]] = []
    a.pond.cluster.on_resync(lambda channel, reason: resyncs.append((channel, reason)))
    # Lose b's leave (PRESENCE_REMOVED, USER_LEFT) on the way to a, then b speaks again.
    real_dispatch = a.pubsub.dispatch

    def lossy(topic: str, data: bytes) -> bool:
        lost = (EnvelopeType.USER_LEFT, EnvelopeType.PRESENCE_REMOVED)
        if decode_envelope(data).type in lost:
            return False
        return real_dispatch(topic, data)

    a.pubsub.dispatch = lossy  # type: ignore[method-assign]
    await bob.leave(ROOM)
    await settle()
    a.pubsub.dispatch = real_dispatch  # type: ignore[method-assign]
    assert presence_names(alice) == ["alice", "bob"]  # the ghost a does not know about yet
    await b.client("dave")  # b's next envelope reveals the gap
    await eventually(lambda: resyncs == [(ROOM, "gap")])
    await eventually(lambda: presence_names(alice) == ["alice", "dave"])
    assert a.pond.cluster.stats.gaps >= 1
