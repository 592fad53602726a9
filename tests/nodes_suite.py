"""The two-node scenario every backend runs (``tests/<backend>/test_nodes_on_*.py``): two
PondSocket nodes joined through the backend, presence and broadcasts crossing in both
directions in several rooms, and a node's user leaving seen by the other node. Alice is
an in-process TestClient on node a; bob is the Python client (``pondsocket.client``) over
a real socket to node b's standalone server, so the client is exercised on every broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from pondsocket import PondSocket
from pondsocket.client import Channel, Message, PondClient
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub import PubSub
from pondsocket.testing import TestClient, TestConnection
from pondsocket.transports.standalone import StandaloneServer
from tests.support import eventually


def make_node(pubsub: PubSub, node_id: str, namespace: str) -> PondSocket:
    cluster = ClusterOptions(namespace=namespace)
    pond = PondSocket(pubsub=pubsub, node_id=node_id, cluster=cluster)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel(
        "/room/:id", lambda ctx: ctx.accept().track({"name": ctx.join_params["name"]})
    )
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    return pond


def names(conn: TestConnection, room: str) -> list[str]:
    frames = conn.frames_for(room, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


def has_names(conn: TestConnection, room: str, expected: list[str]) -> bool:
    return names(conn, room) == expected


def heard(conn: TestConnection, room: str, payload: dict[str, str]) -> bool:
    return any(f["payload"] == payload for f in conn.frames_for(room, event="said"))


def client_has_names(channel: Channel, expected: list[str]) -> bool:
    return sorted(p["name"] for p in channel.presence.users) == expected


def client_heard(said: list[Message], payload: dict[str, str]) -> bool:
    return any(m.payload == payload for m in said)


COMMON_PUBSUB_COUNTERS = ("published", "publish_rejected", "received", "dropped", "disconnects")
"""Counters every backend exports under one name (docs/metrics.md, "Pubsub backend")."""


def assert_cluster_metrics(node: PondSocket) -> None:
    """The node's metrics snapshot counted the traffic that crossed the broker, under the
    documented names every backend shares."""
    snapshot = node.metrics_snapshot()
    assert snapshot["pondsocket_cluster_nodes"] == 1
    assert snapshot["pondsocket_cluster_bus_up"] == 1
    assert snapshot["pondsocket_cluster_envelopes_sent_total"] > 0
    assert snapshot["pondsocket_cluster_envelopes_received_total"] > 0
    assert snapshot["pondsocket_cluster_publish_duration_seconds_count"] > 0
    pubsub = {k: v for k, v in snapshot.items() if k.startswith("pondsocket_pubsub_")}
    backends = {k.partition('backend="')[2].partition('"')[0] for k in pubsub}
    assert len(backends) == 1, backends
    (backend,) = backends
    for counter in COMMON_PUBSUB_COUNTERS:
        assert f'pondsocket_pubsub_{counter}_total{{backend="{backend}"}}' in pubsub, counter
    assert pubsub[f'pondsocket_pubsub_published_total{{backend="{backend}"}}'] > 0
    assert pubsub[f'pondsocket_pubsub_received_total{{backend="{backend}"}}'] > 0


async def two_nodes(
    bus_a: PubSub,
    bus_b: PubSub,
    rooms: Sequence[str],
    *,
    namespace: str = "nodes",
    timeout: float = 10.0,
    check: Callable[[], None] | None = None,
) -> None:
    """Run the scenario over ``bus_a`` and ``bus_b`` (the caller closes them); ``check``
    runs at the end, before the nodes shut down (backend-specific assertions)."""
    a, b = make_node(bus_a, "a", namespace), make_node(bus_b, "b", namespace)
    server = StandaloneServer(b, "127.0.0.1", 0)
    try:
        alice = await TestClient(a).connect("/socket")
        port = await server.start()
        async with PondClient(f"ws://127.0.0.1:{port}/socket") as bob:
            for room in rooms:
                await alice.join(room, {"name": "alice"})
            await asyncio.sleep(0.3)  # a's subscriptions are active before b announces itself
            channels = [await bob.channel(room, {"name": "bob"}).join() for room in rooms]
            for room, channel in zip(rooms, channels, strict=True):
                said: list[Message] = []
                channel.on("said", said.append)
                both = ["alice", "bob"]
                await eventually(partial(has_names, alice, room, both), timeout=timeout)
                await eventually(partial(client_has_names, channel, both), timeout=timeout)
                from_bob = {"from": "bob", "room": room}
                from_alice = {"from": "alice", "room": room}
                await channel.send("say", from_bob)
                await eventually(partial(heard, alice, room, from_bob), timeout=timeout)
                await alice.send(room, "say", from_alice)
                await eventually(partial(client_heard, said, from_alice), timeout=timeout)
        for room in rooms:  # bob's client closed: node a sees him leave every room
            await eventually(partial(has_names, alice, room, ["alice"]), timeout=timeout)
        for node in (a, b):
            assert_cluster_metrics(node)
        if check is not None:
            check()
    finally:
        await server.aclose()
        await a.shutdown(timeout=2)
        await b.shutdown(timeout=2)
