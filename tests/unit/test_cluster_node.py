"""Channel traffic through the PubSub layer: two nodes sharing one in-memory broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from pondsocket import EventContext, JoinContext, PondSocket
from pondsocket.cluster import Envelope, EnvelopeType, InvalidEnvelope, decode_envelope
from pondsocket.cluster.topics import TopicLayout, endpoint_name
from pondsocket.pubsub import InMemoryPubSub
from pondsocket.pubsub.memory import InMemoryBroker
from pondsocket.testing import TestClient, TestConnection

# Copied from shared/spec/captures: real traffic of two upstream Python nodes on Redis.
CAPTURES = Path(__file__).resolve().parents[1] / "data"
ROOM = "/room/1"


def make_node(broker: InMemoryBroker, node_id: str) -> PondSocket:
    pond = PondSocket(pubsub=InMemoryPubSub(broker), node_id=node_id)
    endpoint = pond.create_endpoint("/socket", lambda ctx: ctx.accept())

    def join(ctx: JoinContext) -> None:
        ctx.accept()

    lobby = endpoint.create_channel("/room/:id", join)

    @lobby.on_message("all")
    def to_all(ctx: EventContext) -> None:
        ctx.broadcast("all", ctx.payload)

    @lobby.on_message("others")
    def to_others(ctx: EventContext) -> None:
        ctx.broadcast_from("others", ctx.payload)

    return pond


async def wait_for_frame(
    conn: TestConnection, event: str, timeout: float = 2.0
) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            for frame in conn.frames:
                if frame["event"] == event:
                    return frame
            await asyncio.sleep(0.005)


async def subscribed(pond: PondSocket) -> None:
    # The broker subscription is made asynchronously when a channel opens.
    for _ in range(20):
        await asyncio.sleep(0)


async def test_broadcast_reaches_members_on_another_node() -> None:
    broker = InMemoryBroker()
    a, b = make_node(broker, "node-a"), make_node(broker, "node-b")
    on_a = await TestClient(a).connect("/socket")
    on_b = await TestClient(b).connect("/socket")
    await on_a.join(ROOM)
    await on_b.join(ROOM)
    await subscribed(a)
    request_id = await on_a.send(ROOM, "all", {"text": "hi"})
    frame = await wait_for_frame(on_b, "all")
    assert frame == {
        "action": "BROADCAST",
        "event": "all",
        "channelName": ROOM,
        "requestId": request_id,
        "payload": {"text": "hi"},
    }
    assert len(on_a.frames_for(ROOM, event="all")) == 1  # local delivery, not echoed back
    await a.shutdown()
    await b.shutdown()


async def test_broadcast_from_excludes_the_sender_everywhere() -> None:
    broker = InMemoryBroker()
    a, b = make_node(broker, "node-a"), make_node(broker, "node-b")
    sender = await TestClient(a).connect("/socket")
    peer_a = await TestClient(a).connect("/socket")
    peer_b = await TestClient(b).connect("/socket")
    for conn in (sender, peer_a, peer_b):
        await conn.join(ROOM)
    await subscribed(a)
    await sender.send(ROOM, "others", {"n": 1})
    await wait_for_frame(peer_b, "others")
    await wait_for_frame(peer_a, "others")
    assert sender.frames_for(ROOM, event="others") == []
    await a.shutdown()
    await b.shutdown()


async def test_single_node_publishes_through_its_pubsub() -> None:
    broker = InMemoryBroker()
    pond = make_node(broker, "solo")
    spy = InMemoryPubSub(broker)
    seen: list[tuple[str, bytes]] = []

    async def record(topic: str, data: bytes) -> None:
        seen.append((topic, data))

    await spy.subscribe("pondsocket:v1:default:.*", record)
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await conn.send(ROOM, "all", {"x": 1})

    def messages() -> list[tuple[str, Envelope]]:
        decoded = [(topic, decode_envelope(data)) for topic, data in seen]
        return [(t, e) for t, e in decoded if e.type is EnvelopeType.USER_MESSAGE]

    async with asyncio.timeout(2):
        while not messages():
            await asyncio.sleep(0.005)
    topic, envelope = messages()[0]
    assert topic == "pondsocket:v1:default:socket:/room/1"
    assert envelope.source_node_id == "solo"
    assert envelope.fields["recipientDescriptor"] == "ALL_USERS"
    assert envelope.fields["fromUserId"] == conn.id
    await pond.shutdown()
    await spy.close()


async def test_invalid_and_own_envelopes_are_dropped() -> None:
    broker = InMemoryBroker()
    pond = make_node(broker, "node-a")
    intruder = InMemoryPubSub(broker)
    conn = await TestClient(pond).connect("/socket")
    await conn.join(ROOM)
    await subscribed(pond)
    topic = TopicLayout().channel("socket", ROOM)
    await intruder.publish(topic, b"{not json")
    await intruder.publish(topic, b'{"protocol":"pondsocket.distributed","version":2}')
    own = Envelope(
        EnvelopeType.USER_MESSAGE,
        "node-a",
        "socket",
        ROOM,
        {
            "fromUserId": "CHANNEL",
            "event": "echo",
            "payload": {},
            "requestId": "r",
            "recipientDescriptor": "ALL_USERS",
        },
    )
    await intruder.publish(topic, own.encode())
    foreign = Envelope(
        EnvelopeType.USER_MESSAGE,
        "node-z",
        "socket",
        ROOM,
        {
            "fromUserId": "CHANNEL",
            "event": "hello",
            "payload": {"a": 1},
            "requestId": "r2",
            "recipientDescriptor": [conn.id],
        },
    )
    await intruder.publish(topic, foreign.encode())
    frame = await wait_for_frame(conn, "hello")
    assert frame["payload"] == {"a": 1} and frame["requestId"] == "r2"
    assert conn.frames_for(ROOM, event="echo") == []
    assert pond.cluster.stats.invalid == 2
    await pond.shutdown()
    await intruder.close()


def test_endpoint_name_strips_leading_slashes() -> None:
    assert endpoint_name("/api/socket") == "api/socket"
    assert (
        TopicLayout("p", "ns").channel("api/socket", "/chat/lobby")
        == "p:v1:ns:api/socket:/chat/lobby"
    )
    assert TopicLayout().heartbeat() == "pondsocket:v1:default:__heartbeat__"


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"protocol":"pondsocket.distributed","version":1,"type":"NOPE"}',
        b'{"protocol":"pondsocket.distributed","version":1,"type":"USER_LEFT","messageId":1,"sourceNodeId":"n","endpointName":"e","channelName":"c","timestamp":1}',
        b'{"protocol":"pondsocket.distributed","version":1,"type":"USER_LEFT","messageId":"m","sourceNodeId":"n","endpointName":"e","channelName":"c","timestamp":"1"}',
    ],
)
def test_envelope_validation_follows_the_js_rules(raw: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        decode_envelope(raw)


def test_every_captured_upstream_envelope_decodes() -> None:
    lines = (CAPTURES / "upstream-python-0.0.7-redis.jsonl").read_text().splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        envelope = decode_envelope(orjson.dumps(record["envelope"]))
        assert record["topic"] == TopicLayout().channel(
            envelope.endpoint_name, envelope.channel_name
        )
        # Re-encoding keeps every field a peer would read.
        assert orjson.loads(envelope.encode()) == record["envelope"]
