"""A real cluster: node processes (tests/cluster_node_app.py) linked by the Redis backend,
driven by real WebSocket clients. The same scenarios as tests/unit/cluster/, across
processes and a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.helpers import ROOM, Frame, Predicate
from tests.jsclient import JSClientHarness, ensure_js_client_installed, event_matches

# Cross-node propagation is a few milliseconds; these bounds only catch a hang.
WAIT = 5.0


def is_presence(event: str, name: str) -> Predicate:
    def predicate(frame: Frame) -> bool:
        return bool(
            frame["action"] == "PRESENCE"
            and frame["event"] == event
            and frame["payload"]["changed"].get("name") == name
        )

    return predicate


async def test_presence_lists_and_join_update_leave_frames_cross_nodes(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    await alice.wait_presence(["alice"])
    bob = await cluster.client(b, "bob")
    # bob (late joiner on b) learns alice through STATE_REQUEST/RESPONSE; alice gets a JOIN.
    await bob.wait_presence(["alice", "bob"])
    await alice.wait_presence(["alice", "bob"])
    join = await alice.wait_for(is_presence("JOIN", "bob"))
    assert join["payload"]["changed"] == {"name": "bob"}
    assert sorted(p["name"] for p in join["payload"]["presence"]) == ["alice", "bob"]

    await bob.send("status", {"name": "bob", "status": "away"})
    update = await alice.wait_for(is_presence("UPDATE", "bob"))
    assert update["payload"]["changed"] == {"name": "bob", "status": "away"}
    assert {"name": "bob", "status": "away"} in update["payload"]["presence"]

    await bob.leave()
    leave = await alice.wait_for(is_presence("LEAVE", "bob"))
    # The departed user's last presence is in ``changed``; the list no longer has it.
    assert leave["payload"] == {
        "changed": {"name": "bob", "status": "away"},
        "presence": [{"name": "alice"}],
    }
    stats = await a.stats()
    assert stats["channels"][ROOM]["all"] == [alice.id]
    assert stats["cluster"]["invalid"] == 0


async def test_three_nodes_late_joiner_sees_everyone(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    alice = await cluster.client(a, "alice")
    bob = await cluster.client(b, "bob")
    await alice.wait_presence(["alice", "bob"])
    await bob.wait_presence(["alice", "bob"])
    carol = await cluster.client(c, "carol")
    await carol.wait_presence(["alice", "bob", "carol"])
    for client in (alice, bob):
        await client.wait_presence(["alice", "bob", "carol"])
        await client.wait_for(is_presence("JOIN", "carol"))

    marker = uuid.uuid4().hex
    await carol.send("say", {"m": marker})
    for client in (alice, bob, carol):
        await client.wait_event("say", m=marker)
    for node in (a, b, c):
        stats = await node.stats()
        assert stats["channels"][ROOM]["all"] == sorted([alice.id, bob.id, carol.id])


async def test_broadcast_variants_across_nodes(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    bob = await cluster.client(b, "bob")
    carol = await cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])

    await alice.send("say", {"text": "all"})
    for client in (alice, bob, carol):
        await client.wait_event("say", text="all")

    await bob.send("others", {"text": "not bob"})
    await alice.wait_event("others", text="not bob")
    await carol.wait_event("others", text="not bob")

    # broadcast_to a user on another node; then a sentinel that every one receives after it.
    await alice.send("to", {"ids": [bob.id], "text": "psst"})
    await bob.wait_event("to", text="psst")
    await alice.send("say", {"text": "sentinel"})
    for client in (alice, bob, carol):
        await client.wait_event("say", text="sentinel")
    assert bob.frames_for(event="others") == []  # broadcast_from skipped the sender
    assert carol.frames_for(event="to") == []
    assert alice.frames_for(event="to") == []

    # broadcast_to several users on both nodes, in one call.
    await bob.send("to", {"ids": [alice.id, carol.id], "text": "two"})
    await alice.wait_event("to", text="two")
    await carol.wait_event("to", text="two")

    error = await alice.request("to", {"ids": ["nobody"], "text": "x"})
    assert (error["action"], error["event"]) == ("ERROR", "HANDLER_ERROR")


async def test_whois_reaches_the_node_hosting_the_user(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice", params={"assigns": {"role": "admin"}})
    bob = await cluster.client(b, "bob")
    await bob.wait_presence(["alice", "bob"])
    reply = await bob.request("whois", {"id": alice.id})
    assert reply["event"] == "whois"
    assert reply["payload"] == {
        "found": True,
        "assigns": {"name": "alice", "role": "admin"},
        "presence": {"name": "alice"},
    }
    await alice.send("status", {"name": "alice", "mood": "busy"})
    await bob.wait_for(is_presence("UPDATE", "alice"))
    reply = await bob.request("whois", {"id": alice.id})
    assert reply["payload"]["presence"] == {"name": "alice", "mood": "busy"}

    # Nobody hosts "ghost": the fresh lookup times out (get_user_timeout, 2 s) to "not found".
    started = time.monotonic()
    reply = await bob.request("whois", {"id": "ghost"})
    assert reply["payload"] == {"found": False}
    assert time.monotonic() - started < 4.0


async def test_assigns_set_on_another_node_are_seen_by_the_users_node(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a signed cluster lets a node change another node's users (docs/security.md).
    monkeypatch.setenv("PONDSOCKET_CLUSTER_SECRET", "a-shared-secret-of-the-test-cluster")
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice", params={"assigns": {"role": "admin"}})
    bob = await cluster.client(b, "bob")
    await bob.wait_presence(["alice", "bob"])
    since = bob.mark()
    await bob.send("set", {"id": alice.id, "assigns": {"level": 3}})
    expected = {"name": "alice", "role": "admin", "level": 3}
    deadline = time.monotonic() + WAIT
    while True:  # a's own view (a local lookup on a) once the ASSIGNS_UPDATE arrived
        reply = await alice.request("whois", {"id": alice.id})
        if reply["payload"].get("assigns") == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert reply["payload"]["assigns"] == expected
    assert bob.find(lambda f: f["action"] == "ERROR", since) is None
    stats = await a.stats()
    assert stats["channels"][ROOM]["local"] == [alice.id]
    # b's cached copy and a fresh lookup from b agree.
    assert (await bob.request("whois", {"id": alice.id}))["payload"]["assigns"] == expected


async def test_evicting_a_user_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    dave = await cluster.client(a, "dave")
    bob = await cluster.client(b, "bob")
    carol = await cluster.client(b, "carol")
    for client in (alice, dave, bob, carol):
        await client.wait_presence(["alice", "bob", "carol", "dave"])

    await alice.send("kick", {"id": bob.id, "reason": "bye"})
    notice = await bob.wait_event("kicked_out")
    assert notice["action"] == "SYSTEM"
    assert notice["payload"] == {"reason": "bye", "message": "bye", "code": 403}
    for client in (alice, dave, carol):
        kicked = await client.wait_event("kicked")
        assert kicked["payload"] == {"userId": bob.id, "reason": "bye"}
    for client in (alice, dave, carol):
        await client.wait_presence(["alice", "carol", "dave"])
        leave = await client.wait_for(is_presence("LEAVE", "bob"))
        assert leave["payload"]["changed"] == {"name": "bob"}

    after = bob.mark()
    await alice.send("say", {"text": "after"})
    await carol.send("say", {"text": "after-b"})
    for client in (alice, dave, carol):
        await client.wait_event("say", text="after")
        await client.wait_event("say", text="after-b")
    await bob.silent(lambda f: f["channelName"] == ROOM, 0.3, since=after)
    for node in (a, b):
        assert bob.id not in (await node.stats())["channels"][ROOM]["all"]
    left = (await b.stats())["left"]  # b, bob's node, ran the leave handler
    assert {"user": bob.id, "channel": ROOM, "reason": "evicted:bye"} in left
    assert (await a.stats())["left"] == []
    # Evicted from the channel only: the connection stays, and bob may not send there.
    error = await bob.request("say", {"text": "still here?"})
    assert error["action"] == "ERROR"
    assert error["payload"]["code"] == "NOT_A_MEMBER"


async def test_eviction_notices_across_nodes_are_the_documented_frames(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    dave = await cluster.client(a, "dave")
    bob = await cluster.client(b, "bob")
    carol = await cluster.client(b, "carol")
    for client in (alice, dave, bob, carol):
        await client.wait_presence(["alice", "bob", "carol", "dave"])
    await alice.send("kick", {"id": bob.id, "reason": "bye"})
    notices = {"kicked", "kicked_out"}
    for client in (alice, dave, carol):
        await client.wait_event("kicked")
    await bob.wait_event("kicked_out")
    await asyncio.sleep(0.2)
    seen = {
        client.name: [(f["action"], f["event"]) for f in client.frames if f["event"] in notices]
        for client in (alice, dave, bob, carol)
    }
    # What a local eviction sends (docs/protocol.md), wherever the user is connected.
    assert seen == {
        "alice": [("SYSTEM", "kicked")],
        "dave": [("SYSTEM", "kicked")],
        "bob": [("SYSTEM", "kicked_out"), ("SYSTEM", "kicked")],
        "carol": [("SYSTEM", "kicked")],
    }


async def test_removing_a_user_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    bob = await cluster.client(b, "bob")
    carol = await cluster.client(b, "carol")
    for client in (alice, bob, carol):
        await client.wait_presence(["alice", "bob", "carol"])

    await alice.send("remove", {"id": bob.id})
    await alice.wait_presence(["alice", "carol"])
    await carol.wait_presence(["alice", "carol"])
    after = bob.mark()
    await alice.send("say", {"text": "after"})
    await carol.wait_event("say", text="after")
    await alice.wait_event("say", text="after")
    await bob.silent(lambda f: f["channelName"] == ROOM, 0.3, since=after)
    for node in (a, b):
        assert (await node.stats())["channels"][ROOM]["all"] == sorted([alice.id, carol.id])
    assert (await b.stats())["left"] == [{"user": bob.id, "channel": ROOM, "reason": "removed"}]
    # The connection stays: bob may join again.
    assert (await bob.join())["event"] == "ACKNOWLEDGE"
    await alice.wait_presence(["alice", "bob", "carol"])


async def test_late_joiner_sees_existing_users_and_their_presence(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    await alice.send("status", {"name": "alice", "status": "here"})
    await alice.wait_for(is_presence("UPDATE", "alice"))
    bob = await cluster.client(a, "bob")
    await bob.wait_presence(["alice", "bob"])
    # The first member on b opens the channel there, after a and its users exist.
    carol = await cluster.client(b, "carol")
    await carol.wait_presence(["alice", "bob", "carol"])
    latest = carol.frames_for(action="PRESENCE")[-1]["payload"]["presence"]
    assert {"name": "alice", "status": "here"} in latest
    assignments = await carol.request("whois", {"id": bob.id})
    assert assignments["payload"]["assigns"] == {"name": "bob"}


def users_of(client: str, count: int) -> Callable[[dict[str, Any]], bool]:
    """An ``onUsersChange`` event of ``client`` with ``count`` users."""
    return lambda e: e["type"] == "users" and e["client"] == client and len(e["presence"]) == count


@pytest.mark.js
async def test_js_clients_on_two_nodes(cluster: Cluster) -> None:
    ensure_js_client_installed()
    a, b = await cluster.start("a", "b")
    js = await JSClientHarness.start()
    try:
        await js.command("connect", client="ann", url=a.url, params={"name": "ann"})
        await js.command("join", client="ann", channel=ROOM, params={})
        await js.command("connect", client="ben", url=b.url, params={"name": "ben"})
        await js.command("join", client="ben", channel=ROOM, params={})
        for name in ("ann", "ben"):
            event = await js.wait_event(users_of(name, 2), timeout=WAIT)
            assert sorted(p["name"] for p in event["presence"]) == ["ann", "ben"]
        # onJoin of the other node's user (ann's own join fires it too)
        await js.wait_event(
            event_matches(type="presence", client="ann", kind="join", payload={"name": "ben"})
        )

        await js.command("send", client="ann", channel=ROOM, event="say", payload={"t": "hi"})
        got = await js.wait_event(event_matches(type="message", client="ben", event="say"))
        assert got["payload"] == {"t": "hi"}
        await js.command("send", client="ben", channel=ROOM, event="say", payload={"t": "yo"})
        got = await js.wait_event(
            event_matches(type="message", client="ann", event="say", payload={"t": "yo"})
        )
        assert not js.events(type="fatal")
    finally:
        await js.close()


async def test_graceful_shutdown_announces_the_nodes_users_leaving(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    alice = await cluster.client(a, "alice")
    bob = await cluster.client(b, "bob")
    carol = await cluster.client(b, "carol")
    await alice.wait_presence(["alice", "bob", "carol"])
    started = time.monotonic()
    stop = asyncio.create_task(b.terminate())
    await alice.wait_presence(["alice"], timeout=WAIT)
    elapsed = time.monotonic() - started
    print(f"\ngraceful shutdown: users of the stopped node left after {elapsed:.3f} s")
    assert await stop == 0
    assert "BYE b" in b.lines
    left = {f["payload"]["changed"]["name"] for f in alice.frames_for(event="LEAVE")}
    assert left == {"bob", "carol"}
    assert bob.closed and carol.closed
    assert bob.ws.close_code == 1001
    stats = await a.stats()
    assert stats["cluster"]["dead_nodes"] == 0  # they left; nobody had to time out
    assert stats["channels"][ROOM]["all"] == [alice.id]
    # well under the 7.5 s heartbeat timeout: the LEAVEs were announced, not inferred
    assert elapsed < 5.0
