"""Golden tests of the v1 envelope codec: one per message type, as docs/protocol.md shows
them (ours add a per-topic ``seq`` when sent, which other implementations ignore)."""

from __future__ import annotations

import orjson
import pytest

from pondsocket.cluster import Envelope, EnvelopeType, decode_envelope

BASE = (
    '{"protocol":"pondsocket.distributed","version":1,"type":"%s","messageId":"m1",'
    '"sourceNodeId":"n7x2k9q4m1p8","endpointName":"api/socket","channelName":"/chat/lobby",'
    '"timestamp":1730000000000%s}'
)
GOLDEN: list[tuple[EnvelopeType, dict[str, object], str]] = [
    (EnvelopeType.STATE_REQUEST, {"fromNode": "n7x2k9q4m1p8"}, ',"fromNode":"n7x2k9q4m1p8"'),
    (
        EnvelopeType.STATE_RESPONSE,
        {"users": [{"id": "u1", "assigns": {"role": "admin"}, "presence": {"status": "online"}}]},
        ',"users":[{"id":"u1","assigns":{"role":"admin"},"presence":{"status":"online"}}]',
    ),
    (
        EnvelopeType.USER_JOINED,
        {"userId": "u1", "presence": {}, "assigns": {"role": "member"}},
        ',"userId":"u1","presence":{},"assigns":{"role":"member"}',
    ),
    (EnvelopeType.USER_LEFT, {"userId": "u1"}, ',"userId":"u1"'),
    (
        EnvelopeType.USER_MESSAGE,
        {
            "fromUserId": "u1",
            "event": "message",
            "payload": {"text": "hello"},
            "requestId": "r1",
            "recipientDescriptor": "ALL_EXCEPT_SENDER",
        },
        ',"fromUserId":"u1","event":"message","payload":{"text":"hello"},"requestId":"r1",'
        '"recipientDescriptor":"ALL_EXCEPT_SENDER"',
    ),
    (
        EnvelopeType.PRESENCE_UPDATE,
        {"userId": "u1", "presence": {"status": "away"}},
        ',"userId":"u1","presence":{"status":"away"}',
    ),
    (EnvelopeType.PRESENCE_REMOVED, {"userId": "u1"}, ',"userId":"u1"'),
    (
        EnvelopeType.ASSIGNS_UPDATE,
        {"userId": "u1", "assigns": {"role": "admin"}},
        ',"userId":"u1","assigns":{"role":"admin"}',
    ),
    (EnvelopeType.EVICT_USER, {"userId": "u1", "reason": "spam"}, ',"userId":"u1","reason":"spam"'),
    (EnvelopeType.USER_REMOVE, {"userId": "u1"}, ',"userId":"u1"'),
    (
        EnvelopeType.USER_GET_REQUEST,
        {"userId": "u1", "requestId": "q1", "fromNode": "n7x2k9q4m1p8"},
        ',"userId":"u1","requestId":"q1","fromNode":"n7x2k9q4m1p8"',
    ),
    (
        EnvelopeType.USER_GET_RESPONSE,
        {"userId": "u1", "requestId": "q1", "assigns": {"a": 1}, "presence": {}},
        ',"userId":"u1","requestId":"q1","assigns":{"a":1},"presence":{}',
    ),
    (
        EnvelopeType.NODE_HEARTBEAT,
        {"nodeId": "n7x2k9q4m1p8", "heartbeatIntervalMs": 2500, "heartbeatTimeoutMs": 7500},
        ',"nodeId":"n7x2k9q4m1p8","heartbeatIntervalMs":2500,"heartbeatTimeoutMs":7500',
    ),
]


def test_golden_vectors_cover_every_type() -> None:
    assert {kind for kind, _, _ in GOLDEN} == set(EnvelopeType)


@pytest.mark.parametrize(("kind", "fields", "tail"), GOLDEN, ids=[g[0].value for g in GOLDEN])
def test_encode_matches_golden_json(
    kind: EnvelopeType, fields: dict[str, object], tail: str
) -> None:
    envelope = Envelope(
        kind, "n7x2k9q4m1p8", "api/socket", "/chat/lobby", dict(fields), "m1", 1730000000000
    )
    assert envelope.encode() == (BASE % (kind.value, tail)).encode()


@pytest.mark.parametrize(("kind", "fields", "tail"), GOLDEN, ids=[g[0].value for g in GOLDEN])
def test_decode_golden_json(kind: EnvelopeType, fields: dict[str, object], tail: str) -> None:
    envelope = decode_envelope((BASE % (kind.value, tail)).encode())
    assert (envelope.type, envelope.message_id, envelope.timestamp) == (kind, "m1", 1730000000000)
    assert (envelope.source_node_id, envelope.endpoint_name, envelope.channel_name) == (
        "n7x2k9q4m1p8",
        "api/socket",
        "/chat/lobby",
    )
    assert envelope.fields == fields


def test_unknown_extra_fields_survive_decoding() -> None:
    raw = orjson.loads((BASE % ("USER_LEFT", ',"userId":"u1"')).encode())
    raw["presenceEvent"] = "leave"  # a Go extra
    assert decode_envelope(orjson.dumps(raw)).fields == {"userId": "u1", "presenceEvent": "leave"}
