"""The client protocol's message types (docs/protocol.md).

Client messages decode into :class:`ClientMessage`, a msgspec ``Struct`` that validates
while it parses. Server frames are built as plain values and encoded once by
:mod:`pondsocket.wire.codec`, so a broadcast is serialised a single time.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec


class ServerAction(enum.StrEnum):
    """``action`` values a server may send; the JS client rejects any other."""

    CONNECT = "CONNECT"
    SYSTEM = "SYSTEM"
    BROADCAST = "BROADCAST"
    PRESENCE = "PRESENCE"
    ERROR = "ERROR"


class ClientAction(enum.StrEnum):
    JOIN_CHANNEL = "JOIN_CHANNEL"
    LEAVE_CHANNEL = "LEAVE_CHANNEL"
    BROADCAST = "BROADCAST"


class PresenceEvent(enum.StrEnum):
    JOIN = "JOIN"
    LEAVE = "LEAVE"
    UPDATE = "UPDATE"


class ClientMessage(msgspec.Struct, frozen=True):
    """One message from a client; all five members are required (JS server rules)."""

    action: Literal["JOIN_CHANNEL", "LEAVE_CHANNEL", "BROADCAST"]
    event: str
    channelName: str
    requestId: str
    payload: dict[str, Any]


# Pseudo channel name for connection-level frames (CONNECTION, protocol errors).
ENDPOINT_CHANNEL = "ENDPOINT"

# Fixed event names of the protocol.
EVENT_CONNECTION = "CONNECTION"
EVENT_ACKNOWLEDGE = "ACKNOWLEDGE"
# Every join refusal is SYSTEM/UNAUTHORIZED: npm 0.0.32 declines on the event alone, the PyPI
# client 0.0.6 only on a SYSTEM frame (docs/protocol.md).
EVENT_UNAUTHORIZED = "UNAUTHORIZED"
EVENT_EXIT_ACKNOWLEDGE = "EXIT_ACKNOWLEDGE"
EVENT_INVALID_MESSAGE = "INVALID_MESSAGE"
EVENT_HANDLER_NOT_FOUND = "HANDLER_NOT_FOUND"
EVENT_HANDLER_ERROR = "HANDLER_ERROR"
EVENT_HEARTBEAT = "HEARTBEAT"


class ErrorCode(enum.StrEnum):
    """``payload.code`` of error frames; lets clients tell refusals apart."""

    UNAUTHORIZED_JOIN_REQUEST = "UNAUTHORIZED_JOIN_REQUEST"
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"
    CHANNEL_ERROR = "CHANNEL_ERROR"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_UTF8 = "INVALID_UTF8"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    NOT_A_MEMBER = "NOT_A_MEMBER"
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_CHANNELS = "TOO_MANY_CHANNELS"
    HANDLER_NOT_FOUND = "HANDLER_NOT_FOUND"
    HANDLER_ERROR = "HANDLER_ERROR"
