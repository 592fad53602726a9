"""Two PondSocket nodes joined through the Pub/Sub emulator: presence and broadcasts cross."""

from __future__ import annotations

import uuid

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.gcp import GooglePubSub
from pondsocket.testing import TestClient, TestConnection
from tests.gcp.conftest import Emulator
from tests.support import eventually

ROOMS = [f"/room/{i}" for i in range(3)]


def make_node(pubsub: GooglePubSub, node_id: str) -> PondSocket:
    pond = PondSocket(pubsub=pubsub, node_id=node_id, cluster=ClusterOptions(namespace="gc"))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel(
        "/room/:id", lambda ctx: ctx.accept().track({"name": ctx.join_params["name"]})
    )
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    return pond


def names(conn: TestConnection, room: str) -> list[str]:
    frames = conn.frames_for(room, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


async def test_two_nodes_over_google_pubsub(emulator: Emulator) -> None:
    url = f"gcppubsub://nodes-{uuid.uuid4().hex[:8]}?emulator={emulator.host}&namespace=gc"
    bus_a = await GooglePubSub.connect(url)
    bus_b = await GooglePubSub.connect(url)
    a, b = make_node(bus_a, "a"), make_node(bus_b, "b")
    try:
        alice = await TestClient(a).connect("/socket")
        bob = await TestClient(b).connect("/socket")
        for room in ROOMS:
            await alice.join(room, {"name": "alice"})
        for room in ROOMS:
            await bob.join(room, {"name": "bob"})
        for room in ROOMS:
            await eventually(lambda room=room: names(alice, room) == ["alice", "bob"])
            await eventually(lambda room=room: names(bob, room) == ["alice", "bob"])
            await bob.send(room, "say", {"room": room})
            await eventually(lambda room=room: bool(alice.frames_for(room, event="said")))
            await alice.send(room, "say", {"from": "alice"})
            await eventually(lambda room=room: bool(bob.frames_for(room, event="said")))
        await bob.close()
        for room in ROOMS:
            await eventually(lambda room=room: names(alice, room) == ["alice"])
    finally:
        await a.shutdown(timeout=2)
        await b.shutdown(timeout=2)
        await bus_a.close()
        await bus_b.close()
