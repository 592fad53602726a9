"""Two PondSocket nodes joined through Kafka (Tansu): presence and broadcasts cross."""

from __future__ import annotations

import asyncio

from pondsocket import PondSocket
from pondsocket.cluster import ClusterOptions
from pondsocket.pubsub.kafka import KafkaPubSub
from pondsocket.testing import TestClient, TestConnection
from tests.kafka.conftest import KafkaFactory
from tests.support import eventually

ROOMS = [f"/room/{i}" for i in range(4)]


def make_node(pubsub: KafkaPubSub, node_id: str) -> PondSocket:
    pond = PondSocket(pubsub=pubsub, node_id=node_id, cluster=ClusterOptions(namespace="kc"))
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())
    lobby = endpoint.create_channel(
        "/room/:id", lambda ctx: ctx.accept().track({"name": ctx.join_params["name"]})
    )
    lobby.on_message("say", lambda ctx: ctx.broadcast("said", ctx.payload))
    return pond


def names(conn: TestConnection, room: str) -> list[str]:
    frames = conn.frames_for(room, action="PRESENCE")
    return sorted(p["name"] for p in frames[-1]["payload"]["presence"]) if frames else []


async def test_two_nodes_over_kafka(kafka_factory: KafkaFactory) -> None:
    async with kafka_factory() as bus_a, kafka_factory() as bus_b:
        a, b = make_node(bus_a, "a"), make_node(bus_b, "b")
        try:
            alice = await TestClient(a).connect("/socket")
            bob = await TestClient(b).connect("/socket")
            for room in ROOMS:
                await alice.join(room, {"name": "alice"})
            await asyncio.sleep(0.3)  # a's subscriptions are active before b announces itself
            for room in ROOMS:
                await bob.join(room, {"name": "bob"})
            for room in ROOMS:
                await eventually(lambda room=room: names(alice, room) == ["alice", "bob"])
                await eventually(lambda room=room: names(bob, room) == ["alice", "bob"])
                await bob.send(room, "say", {"room": room})
                await eventually(lambda room=room: bool(alice.frames_for(room, event="said")))
            await bob.close()
            for room in ROOMS:
                await eventually(lambda room=room: names(alice, room) == ["alice"])
            kafka_topics = set(bus_a._readers)
            assert kafka_topics == {f"{bus_a.options.mapper.topic_prefix}pondsocket.kc"}
        finally:
            await a.shutdown(timeout=2)
            await b.shutdown(timeout=2)
