"""Faults in a real cluster, each test on its own throwaway redis-server: a node killed,
Redis killed and restarted, a slow handler, garbage on a channel topic, an oversized
message. Measured figures are printed (run with ``-s`` to see them)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from tests.cluster.conftest import Cluster
from tests.cluster.helpers import ROOM, Frame, Predicate, WsClient
from tests.support import eventually

pytestmark = pytest.mark.slow

DEAD_NODE_BOUND = 15.0
"""Default options declare a silent node dead after 7.5 s (checked every second), so its
users should leave within about 10 s of the kill; fail only past this generous bound."""
CONVERGE_BOUND = 20.0
HEARTBEAT_INTERVAL = 2.5  # ClusterOptions' default


def leave_of(name: str) -> Predicate:
    def predicate(frame: Frame) -> bool:
        return bool(
            frame["action"] == "PRESENCE"
            and frame["event"] == "LEAVE"
            and frame["payload"]["changed"].get("name") == name
        )

    return predicate


async def test_killed_node_users_leave_after_the_heartbeat_timeout(fault_cluster: Cluster) -> None:
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    await fault_cluster.client(b, "bob")
    await fault_cluster.client(b, "carol")
    await alice.wait_presence(["alice", "bob", "carol"])
    # Let a hear one of b's heartbeats (every 2.5 s) and so learn b's 7.5 s timeout: b's
    # first heartbeat may have gone out before a subscribed (see the next test).
    await asyncio.sleep(HEARTBEAT_INTERVAL + 0.2)

    killed = time.monotonic()
    await b.kill()
    first = await alice.wait_for(leave_of("bob"), timeout=DEAD_NODE_BOUND)
    second = await alice.wait_for(leave_of("carol"), timeout=DEAD_NODE_BOUND)
    await alice.wait_presence(["alice"], timeout=1.0)
    elapsed = max(first["_at"], second["_at"]) - killed
    print(f"\nSIGKILLed node: its users' LEAVE frames arrived {elapsed:.2f} s after the kill")
    assert elapsed < DEAD_NODE_BOUND
    assert first["payload"]["changed"] == {"name": "bob"}
    stats = await a.stats()
    assert stats["cluster"]["dead_nodes"] == 1
    assert stats["channels"][ROOM]["all"] == [alice.id]


async def test_node_killed_before_its_peer_heard_a_heartbeat(fault_cluster: Cluster) -> None:
    (b,) = await fault_cluster.start("b")  # b's first heartbeat goes out now, unheard
    ready = time.monotonic()
    (a,) = await fault_cluster.start("a")
    alice = await fault_cluster.client(a, "alice")
    await fault_cluster.client(b, "bob")
    await alice.wait_presence(["alice", "bob"])  # a knows bob from b's USER_JOINED
    if time.monotonic() - ready > HEARTBEAT_INTERVAL - 0.3:
        pytest.skip("too slow to kill b before its second heartbeat")
    killed = time.monotonic()
    await b.kill()
    # Same bound as above; in fact bob stays for 90 s (heartbeat_timeout x 12).
    leave = await alice.wait_for(leave_of("bob"), timeout=DEAD_NODE_BOUND)
    print(
        f"\nnode killed before a heard its heartbeat: bob left {leave['_at'] - killed:.2f} s later"
    )


async def _chatter(client: WsClient, stop: asyncio.Event) -> int:
    """Send ``say`` every 100 ms until ``stop``; returns how many were sent."""
    sent = 0
    while not stop.is_set():
        await client.send("say", {"chatter": client.name, "n": sent})
        sent += 1
        await asyncio.sleep(0.1)
    return sent


async def _until_delivered(sender: WsClient, receiver: WsClient, deadline: float) -> None:
    """Send markers until one reaches ``receiver`` (the first ones may be lost while the
    nodes resubscribe)."""
    while True:
        marker = uuid.uuid4().hex
        since = receiver.mark()
        await sender.send("say", {"marker": marker})
        try:
            await receiver.wait_event("say", timeout=0.5, since=since, marker=marker)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


async def test_redis_restart_converges_presence_and_broadcasts(fault_cluster: Cluster) -> None:
    """Redis SIGKILLed and restarted on its port while clients on both nodes keep sending:
    a user who left meanwhile is gone everywhere, one who joined is seen everywhere."""
    server = fault_cluster.redis
    assert server is not None
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(b, "bob")
    carol = await fault_cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])

    stop = asyncio.Event()
    chatter = [asyncio.create_task(_chatter(c, stop)) for c in (alice, bob)]
    try:
        await asyncio.sleep(0.3)
        server.kill()
        await asyncio.sleep(0.3)
        # Redis is down: local delivery goes on, and membership changes happen that the
        # other node cannot hear about.
        since = carol.mark()
        await bob.send("say", {"marker": "local-during-outage"})
        await carol.wait_event("say", since=since, marker="local-during-outage")
        await carol.leave()
        await bob.wait_presence(["alice", "bob"])
        dave = await fault_cluster.client(a, "dave")
        await dave.wait_presence(["alice", "bob", "carol", "dave"])  # a's stale view
        await asyncio.sleep(0.5)

        await server.start()  # same port
        back = time.monotonic()
        for client in (alice, bob, dave):
            await client.wait_presence(["alice", "bob", "dave"], timeout=CONVERGE_BOUND)
        presence_converged = time.monotonic() - back
        deadline = back + CONVERGE_BOUND
        await _until_delivered(alice, bob, deadline)
        await _until_delivered(bob, dave, deadline)
        converged = time.monotonic() - back
        # The chatter of the node across flows again too.
        since = dave.mark()
        await dave.wait_event("say", since=since, chatter="bob")
        await bob.wait_event("say", since=bob.mark(), chatter="alice")
    finally:
        stop.set()
        sent = await asyncio.gather(*chatter)
    print(
        f"\nRedis restart: presence converged {presence_converged:.2f} s after Redis was "
        f"back, broadcasts flowing both ways after {converged:.2f} s "
        f"(chatter sent {sent} messages)"
    )
    assert converged < CONVERGE_BOUND
    for node in (a, b):
        stats = await node.stats()
        assert stats["channels"][ROOM]["all"] == sorted([alice.id, bob.id, dave.id])
        assert stats["cluster"]["reconnects"] >= 1
        assert stats["cluster"]["resyncs"] >= 1
        assert stats["pubsub"]["reconnects"] >= 1 and stats["pubsub"]["disconnects"] >= 1
        assert stats["cluster"]["dead_nodes"] == 0  # the outage was shorter than the timeout


async def test_outage_longer_than_the_heartbeat_timeout_recovers(fault_cluster: Cluster) -> None:
    """Redis down for longer than the heartbeat timeout: each node declares the other dead
    (LEAVE frames for its users), then everything comes back once Redis does."""
    server = fault_cluster.redis
    assert server is not None
    a, b = await fault_cluster.start("a", "b", heartbeat_interval=0.5, heartbeat_timeout=1.5)
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(b, "bob")
    carol = await fault_cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])
    await asyncio.sleep(0.6)  # a heartbeat each way: both know the 1.5 s timeout

    server.kill()
    await carol.leave()
    dave = await fault_cluster.client(a, "dave")
    await alice.wait_presence(["alice", "dave"], timeout=5.0)  # b declared dead
    await bob.wait_presence(["bob"], timeout=5.0)  # a declared dead
    await server.start()
    back = time.monotonic()
    for client in (alice, bob, dave):
        await client.wait_presence(["alice", "bob", "dave"], timeout=CONVERGE_BOUND)
    deadline = back + CONVERGE_BOUND
    await _until_delivered(bob, dave, deadline)
    await _until_delivered(dave, bob, deadline)
    print(
        f"\nRedis down past the heartbeat timeout: peers came back "
        f"{time.monotonic() - back:.2f} s after Redis"
    )
    for node in (a, b):
        stats = await node.stats()
        assert stats["cluster"]["dead_nodes"] == 1
        assert stats["channels"][ROOM]["all"] == sorted([alice.id, bob.id, dave.id])


async def test_slow_handler_does_not_delay_other_broadcasts(fault_cluster: Cluster) -> None:
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(a, "bob")
    carol = await fault_cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])

    started = time.monotonic()
    slow_request = await alice.send("slow", {"seconds": 2.0})
    await asyncio.sleep(0.1)  # alice's handler is sleeping now
    sent = time.monotonic()
    await bob.send("say", {"marker": "from-a"})
    await carol.send("say", {"marker": "from-b"})
    latencies: dict[str, float] = {}
    for client in (alice, bob, carol):
        for marker in ("from-a", "from-b"):
            frame = await client.wait_event("say", timeout=1.5, marker=marker)
            latencies[f"{marker}->{client.name}"] = frame["_at"] - sent
    reply = await alice.wait_for(lambda f: f.get("requestId") == slow_request, timeout=5.0)
    slow_elapsed = reply["_at"] - started
    print(
        "\nslow handler (2 s) running; broadcast latencies meanwhile: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(latencies.items()))
        + f"; the slow reply came after {slow_elapsed:.2f} s"
    )
    assert reply["event"] == "slow"
    assert slow_elapsed >= 1.9
    assert max(latencies.values()) < 1.0  # not queued behind the 2 s handler
    # alice herself got them while her own handler was still sleeping.
    for marker in ("from-a", "from-b"):
        seen = alice.find(lambda f, m=marker: f["payload"].get("marker") == m)  # type: ignore[misc]
        assert seen is not None and seen["_at"] < reply["_at"]


async def test_invalid_envelopes_are_dropped_and_counted(fault_cluster: Cluster) -> None:
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(b, "bob")
    await alice.wait_presence(["alice", "bob"])
    await bob.wait_presence(["alice", "bob"])

    bad_user_message = (
        b'{"protocol":"pondsocket.distributed","version":1,"type":"USER_MESSAGE",'
        b'"messageId":"m-1","sourceNodeId":"intruder","endpointName":"socket",'
        b'"channelName":"/room/1","timestamp":1,"event":"say","payload":{},'
        b'"recipientDescriptor":42}'
    )
    heartbeat_topic = f"pondsocket:v1:{fault_cluster.namespace}:__heartbeat__"
    client = redis_asyncio.Redis.from_url(fault_cluster.redis_url)
    try:
        receivers = [
            await client.publish(fault_cluster.topic, b"not json at all"),
            await client.publish(fault_cluster.topic, b'{"protocol":"something else"}'),
            await client.publish(fault_cluster.topic, bad_user_message),
            await client.publish(heartbeat_topic, b"\xff\xfe garbage"),
        ]
    finally:
        await client.aclose()
    assert receivers == [2, 2, 2, 2]  # both nodes are subscribed to these very topics

    async def invalid(node: Any) -> int:
        return int((await node.stats())["cluster"]["invalid"])

    deadline = time.monotonic() + 5.0
    while (await invalid(a), await invalid(b)) != (4, 4) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert (await invalid(a), await invalid(b)) == (4, 4)

    # Both nodes keep working: messages, presence and lookups cross as before.
    await alice.send("say", {"marker": "still-working"})
    await bob.wait_event("say", marker="still-working")
    carol = await fault_cluster.client(b, "carol")
    await alice.wait_presence(["alice", "bob", "carol"])
    reply = await carol.request("whois", {"id": alice.id})
    assert reply["payload"]["found"] is True
    assert bob.frames_for(event="say") and not any(
        f["payload"] == {} for f in bob.frames_for(event="say")
    )  # the intruder's message was not delivered
    assert "dropped an invalid envelope" in a.log_text()


async def test_oversized_message_fails_the_cross_node_publish_loudly(
    fault_cluster: Cluster,
) -> None:
    a, b = await fault_cluster.start("a", "b")
    alice = await fault_cluster.client(a, "alice")
    bob = await fault_cluster.client(a, "bob")
    carol = await fault_cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])

    size = 2 * 1024 * 1024  # over the Redis backend's 1 MiB max_message_size
    since = carol.mark()
    request_id = await alice.send("big", {"size": size})
    # Local members get it: the broadcast is delivered here before the cluster publish.
    for client in (alice, bob):
        frame = await client.wait_event("big", timeout=10.0)
        assert frame["payload"]["size"] == size and len(frame["payload"]["data"]) == size
    # No error reaches the sender: the handler returned before the publish was tried.
    assert alice.find(lambda f: f.get("requestId") == request_id and f["action"] == "ERROR") is None

    stats: dict[str, Any] = {}

    async def publish_failed() -> bool:
        stats.update(await a.stats())
        return bool(stats["cluster"]["publish_errors"] >= 1)

    deadline = time.monotonic() + 5.0
    while not await publish_failed() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert stats["cluster"]["publish_errors"] == 1
    await eventually(lambda: "publishing to" in a.log_text(), what="the publish error log")
    log = a.log_text()
    assert fault_cluster.topic in log and "max_message_size" in log
    await carol.silent(lambda f: f["event"] == "big", 0.5, since=since)

    # Both nodes keep working afterwards.
    await alice.send("say", {"marker": "after-big"})
    await carol.wait_event("say", since=since, marker="after-big")
    await carol.send("say", {"marker": "back"})
    await alice.wait_event("say", marker="back")
    await bob.wait_event("say", marker="back")
    b_stats = await b.stats()
    assert b_stats["channels"][ROOM]["all"] == sorted([alice.id, bob.id, carol.id])
    # b noticed the lost envelope (a sequence gap) and resynced the channel.
    assert b_stats["cluster"]["gaps"] >= 1 and b_stats["cluster"]["resyncs"] >= 1
    print(
        f"\n2 MiB broadcast: delivered to a's {len(alice.frames_for(event='big'))}+"
        f"{len(bob.frames_for(event='big'))} local clients, no error to the sender; a's "
        f"publish_errors={stats['cluster']['publish_errors']} (MessageTooLargeError logged); "
        f"b saw gaps={b_stats['cluster']['gaps']} and resynced"
    )
