"""Frames on the wire (docs/protocol.md), from the client's side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from pondsocket.wire.codec import new_request_id
from pondsocket.wire.messages import ENDPOINT_CHANNEL


class ServerFrame(msgspec.Struct, frozen=True):
    """One frame from the server: all five members, ``payload`` an object."""

    action: str
    event: str
    channelName: str
    requestId: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "event": self.event,
            "channelName": self.channelName,
            "requestId": self.requestId,
            "payload": self.payload,
        }


_decoder = msgspec.json.Decoder(ServerFrame)


def decode_frame(data: str | bytes) -> ServerFrame | None:
    """The frame, or None if it is not a valid PondSocket frame (then ignored and logged)."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None


def encode_message(
    action: str, channel: str, event: str, payload: dict[str, Any], request_id: str | None = None
) -> tuple[str, str]:
    """``(request id, text)`` of one client message."""
    rid = request_id or new_request_id()
    text = orjson.dumps(
        {
            "action": action,
            "event": event,
            "channelName": channel,
            "requestId": rid,
            "payload": payload,
        }
    ).decode()
    return rid, text


@dataclass(frozen=True, slots=True)
class Message:
    """A message of a channel, as handed to ``on()`` handlers and ``async for``.

    ``action`` is ``BROADCAST`` for application messages, ``SYSTEM`` for notices
    (``recovery``, ``continuity_lost``, ``kicked_out``, ...) and ``ERROR`` for errors not
    tied to a request. ``position`` is ``payload["_position"]`` on a history channel."""

    channel: str
    event: str
    payload: dict[str, Any]
    action: str = "BROADCAST"
    request_id: str = ""

    @property
    def position(self) -> dict[str, Any] | None:
        position = self.payload.get("_position")
        return position if isinstance(position, dict) else None

    @classmethod
    def from_frame(cls, frame: ServerFrame) -> Message:
        return cls(frame.channelName, frame.event, frame.payload, frame.action, frame.requestId)


__all__ = ["ENDPOINT_CHANNEL", "Message", "ServerFrame", "decode_frame", "encode_message"]
