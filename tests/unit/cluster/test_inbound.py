"""Applying other nodes' envelopes to a local channel (cluster/inbound.py): presence,
messages, assigns, eviction and removal across nodes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tests.support import eventually
from tests.unit.cluster.nodes import FAST, ROOM, Node, foreign_envelope, presence_names, settle

from pondsocket.cluster import EnvelopeType
from pondsocket.pubsub import InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker


async def test_presence_crosses_nodes_with_merged_lists(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    await settle()
    bob = await b.client("bob")
    # bob (late joiner) learns alice through STATE_REQUEST/RESPONSE; alice gets a JOIN frame.
    await eventually(lambda: presence_names(bob) == ["alice", "bob"])
    await eventually(lambda: presence_names(alice) == ["alice", "bob"])
    join = alice.frames_for(ROOM, action="PRESENCE")[-1]
    assert (join["event"], join["payload"]["changed"]) == ("JOIN", {"name": "bob"})

    await bob.send(ROOM, "status", {"name": "bob", "status": "away"})
    await eventually(lambda: alice.frames_for(ROOM, action="PRESENCE")[-1]["event"] == "UPDATE")
    assert alice.frames_for(ROOM, action="PRESENCE")[-1]["payload"]["changed"]["status"] == "away"

    await bob.leave(ROOM)
    await eventually(lambda: alice.frames_for(ROOM, action="PRESENCE")[-1]["event"] == "LEAVE")
    leave = alice.frames_for(ROOM, action="PRESENCE")[-1]
    assert leave["payload"] == {
        "changed": {"name": "bob", "status": "away"},
        "presence": [{"name": "alice"}],
    }
    assert a.channel.all_user_ids == [alice.id]


async def test_broadcast_to_a_user_on_another_node(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    bob = await b.client("bob")
    carol = await b.client("carol")
    await eventually(lambda: a.channel.knows_user(bob.id))
    await alice.send(ROOM, "to", {"ids": [bob.id]})
    await eventually(lambda: bool(bob.frames_for(ROOM, event="to")))
    await carol.send(ROOM, "all", {"sentinel": True})
    await eventually(lambda: bool(alice.frames_for(ROOM, event="all")))
    assert carol.frames_for(ROOM, event="to") == []
    error = await alice.request(ROOM, "to", {"ids": ["nobody"]})
    assert error["event"] == "HANDLER_ERROR"


# The cluster is signed (cluster/signing.py) so signed envelopes are applied too.
async def test_assigns_sync_and_remote_assign_in_a_signed_cluster() -> None:
    broker, signed = InMemoryBroker(), dataclasses.replace(FAST, secret="s" * 32)
    a, b = Node(broker, "a", signed), Node(broker, "b", signed)
    alice = await a.client("alice", role="admin")
    bob = await b.client("bob")
    await eventually(lambda: b.channel.get_assigns().get(alice.id) == {"role": "admin"})
    # Changing a remote member's assigns updates its own node (full snapshot).
    await bob.send(ROOM, "set", {"id": alice.id, "assigns": {"level": 3}})
    await eventually(lambda: a.channel.get_user(alice.id).assigns == {"role": "admin", "level": 3})
    reply = await bob.request(ROOM, "whois", {"id": alice.id})
    await eventually(lambda: bool(bob.frames_for(ROOM, event="whois")))
    reply = bob.frames_for(ROOM, event="whois")[-1]
    assert reply["payload"] == {
        "assigns": {"role": "admin", "level": 3},
        "presence": {"name": "alice"},
    }
    for node in (a, b):
        await node.pond.shutdown(timeout=1)
        await node.pubsub.close()


async def test_evicting_a_user_on_another_node(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    bob = await b.client("bob")
    carol = await b.client("carol")
    await eventually(lambda: a.channel.knows_user(bob.id))
    await alice.send(ROOM, "kick", {"id": bob.id})
    await eventually(lambda: bool(bob.frames_for(ROOM, event="kicked_out")))
    assert bob.frames_for(ROOM, event="kicked_out")[0]["action"] == "SYSTEM"
    await eventually(lambda: bool(carol.frames_for(ROOM, event="kicked")))
    assert carol.frames_for(ROOM, event="kicked")[0]["payload"] == {
        "userId": bob.id,
        "reason": "bye",
    }
    await eventually(lambda: (bob.id, "evicted:bye") in b.left)
    await eventually(lambda: presence_names(alice) == ["alice", "carol"])
    assert not a.channel.knows_user(bob.id)
    await alice.send(ROOM, "all", {"after": 1})
    await eventually(lambda: bool(carol.frames_for(ROOM, event="all")))
    assert bob.frames_for(ROOM, event="all") == []


async def test_removing_a_user_on_another_node(cluster: Callable[[str], Node]) -> None:
    a, b = cluster("a"), cluster("b")
    alice = await a.client("alice")
    bob = await b.client("bob")
    await eventually(lambda: a.channel.knows_user(bob.id))
    await alice.send(ROOM, "remove", {"id": bob.id})
    await eventually(lambda: (bob.id, "removed") in b.left)
    await eventually(lambda: presence_names(alice) == ["alice"])


async def test_an_eviction_relayed_by_a_js_node_gives_the_user_one_notice() -> None:
    # A JS node evicting our user relays kicked_out to [U] and kicked to everyone (as
    # USER_MESSAGEs, so BROADCAST here), then publishes EVICT_USER.
    broker = InMemoryBroker()
    node = Node(broker, "a")
    victim = await node.client("victim")
    other = await node.client("other")
    await settle()
    js_node = InMemoryPubSub(broker)
    topic = node.pond.cluster.topic_of(node.channel)
    notice = {"message": "spam", "code": 403}
    kicked = {"userId": victim.id, "reason": "spam"}
    for kind, fields in (
        (
            EnvelopeType.USER_MESSAGE,
            {
                "event": "kicked_out",
                "payload": notice,
                "recipientDescriptor": [victim.id],
                "fromUserId": "CHANNEL",
                "requestId": "r1",
            },
        ),
        (
            EnvelopeType.USER_MESSAGE,
            {
                "event": "kicked",
                "payload": kicked,
                "recipientDescriptor": "ALL_USERS",
                "fromUserId": "CHANNEL",
                "requestId": "r2",
            },
        ),
        (EnvelopeType.EVICT_USER, {"userId": victim.id, "reason": "spam"}),
    ):
        await js_node.publish(topic, foreign_envelope(kind, node, "js-node", **fields))
    await eventually(lambda: (victim.id, "evicted:spam") in node.left)
    assert len(victim.frames_for(ROOM, event="kicked_out")) == 1
    assert len(victim.frames_for(ROOM, event="kicked")) == 1
    assert len(other.frames_for(ROOM, event="kicked")) == 1
    assert not node.channel.knows_user(victim.id)
    await node.pond.shutdown(timeout=1)
    await js_node.close()
    await node.pubsub.close()


async def test_a_peers_presence_above_the_limit_is_not_spread_to_our_clients() -> None:
    broker = InMemoryBroker()
    node = Node(broker, "a")
    alice = await node.client("alice")
    await settle()
    peer = InMemoryPubSub(broker)
    topic = node.pond.cluster.topic_of(node.channel)
    for user, presence in (("big", {"name": "x" * 5000}), ("small", {"name": "small"})):
        joined = foreign_envelope(
            EnvelopeType.USER_JOINED, node, "peer", userId=user, presence=presence, assigns={}
        )
        await peer.publish(topic, joined)
    await eventually(lambda: presence_names(alice) == ["alice", "small"])
    assert node.channel.knows_user("big")  # a member still, only without the presence
    assert "big" not in node.channel.get_presence()
    await node.pond.shutdown(timeout=1)
    await peer.close()
    await node.pubsub.close()
