"""The "pondsocket.distributed" v1 envelope (docs/protocol.md): codec and validation.

Receivers apply the JS rules (the strictest peer) and drop anything else; senders always
emit every envelope field. Type-specific fields stay in ``fields`` so unknown extras from
other implementations survive decoding.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from pondsocket.wire.ids import random_hex

PROTOCOL = "pondsocket.distributed"
VERSION = 1


class EnvelopeType(enum.StrEnum):
    STATE_REQUEST = "STATE_REQUEST"
    STATE_RESPONSE = "STATE_RESPONSE"
    USER_JOINED = "USER_JOINED"
    USER_LEFT = "USER_LEFT"
    USER_MESSAGE = "USER_MESSAGE"
    PRESENCE_UPDATE = "PRESENCE_UPDATE"
    PRESENCE_REMOVED = "PRESENCE_REMOVED"
    ASSIGNS_UPDATE = "ASSIGNS_UPDATE"
    EVICT_USER = "EVICT_USER"
    USER_REMOVE = "USER_REMOVE"
    USER_GET_REQUEST = "USER_GET_REQUEST"
    USER_GET_RESPONSE = "USER_GET_RESPONSE"
    NODE_HEARTBEAT = "NODE_HEARTBEAT"


_TYPES = frozenset(t.value for t in EnvelopeType)
_STRING_FIELDS = ("messageId", "sourceNodeId", "endpointName", "channelName")


class InvalidEnvelope(ValueError):
    """A message on a PondSocket topic that is not a valid v1 envelope."""


@dataclass(frozen=True, slots=True)
class Envelope:
    type: EnvelopeType
    source_node_id: str
    endpoint_name: str
    channel_name: str
    fields: dict[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=random_hex)
    timestamp: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    verified: bool = field(default=False, compare=False)
    """Received with a valid signature of one of our cluster keys."""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "protocol": PROTOCOL,
                "version": VERSION,
                "type": self.type.value,
                "messageId": self.message_id,
                "sourceNodeId": self.source_node_id,
                "endpointName": self.endpoint_name,
                "channelName": self.channel_name,
                "timestamp": self.timestamp,
                **self.fields,
            }
        )


def decode_envelope(data: bytes, *, verified: bool = False) -> Envelope:
    """Parse and validate; raises :class:`InvalidEnvelope` with the reason."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidEnvelope(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEnvelope("not a JSON object")
    version = raw.pop("version", None)
    if raw.pop("protocol", None) != PROTOCOL or type(version) is not int or version != VERSION:
        raise InvalidEnvelope("wrong protocol or version")
    kind = raw.pop("type", None)
    if not isinstance(kind, str) or kind not in _TYPES:
        raise InvalidEnvelope(f"unknown type {kind!r}")
    for name in _STRING_FIELDS:
        if not isinstance(raw.get(name), str):
            raise InvalidEnvelope(f"{name} must be a string")
    timestamp = raw.pop("timestamp", None)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise InvalidEnvelope("timestamp must be a number")
    return Envelope(
        type=EnvelopeType(kind),
        message_id=raw.pop("messageId"),
        source_node_id=raw.pop("sourceNodeId"),
        endpoint_name=raw.pop("endpointName"),
        channel_name=raw.pop("channelName"),
        timestamp=int(timestamp),
        fields=raw,
        verified=verified,
    )
