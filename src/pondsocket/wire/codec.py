"""Decode client messages and encode server frames (docs/protocol.md).

Decoding never raises: it returns a :class:`ClientMessage` or a :class:`DecodeError` that
carries whatever ``requestId``/``channelName`` could still be read, so the error frame can
be correlated by the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from pondsocket.errors import PayloadError
from pondsocket.wire.ids import random_uuid
from pondsocket.wire.messages import (
    ENDPOINT_CHANNEL,
    EVENT_HEARTBEAT,
    EVENT_INVALID_MESSAGE,
    ClientMessage,
    ErrorCode,
    ServerAction,
)

_decoder = msgspec.json.Decoder(ClientMessage)


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a client message was rejected, with what could be salvaged for the reply."""

    code: ErrorCode
    message: str
    status: int
    request_id: str | None = None
    channel_name: str | None = None


@dataclass(frozen=True, slots=True)
class ApplicationPing:
    """``{"action":"ping"}`` sent by the JS client's ``pingInterval`` option: ignore it."""


def new_request_id() -> str:
    return random_uuid()


def decode_client_message(data: bytes | str) -> ClientMessage | DecodeError | ApplicationPing:
    try:
        message = _decoder.decode(data)
    except RecursionError:  # msgspec recurses per level: ~1000 levels in 2 KB
        return DecodeError(ErrorCode.INVALID_MESSAGE, "Invalid message: nested too deeply", 400)
    except UnicodeEncodeError:  # a str with lone surrogates (only from in-process callers)
        return DecodeError(ErrorCode.INVALID_UTF8, "Message is not valid UTF-8", 400)
    except msgspec.ValidationError as exc:
        return _salvage(data, f"Invalid message: {exc}")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec <= 0.22 raises UnicodeDecodeError for bad UTF-8 and 0.23 a DecodeError, so
        # the error path checks the bytes itself instead of trusting the exception type.
        if not _is_utf8(data):
            return DecodeError(ErrorCode.INVALID_UTF8, "Message is not valid UTF-8", 400)
        return DecodeError(ErrorCode.INVALID_MESSAGE, f"Malformed JSON: {exc}", 400)
    if not message.channelName or not message.requestId:
        return DecodeError(
            ErrorCode.INVALID_MESSAGE,
            "Invalid message: channelName and requestId must be non-empty",
            400,
            request_id=message.requestId or None,
            channel_name=message.channelName or None,
        )
    if not _relayable(message.payload):
        return DecodeError(
            ErrorCode.INVALID_MESSAGE,
            f"Invalid message: the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels or"
            " holds an integer outside the 64-bit range",
            400,
            request_id=message.requestId,
            channel_name=message.channelName,
        )
    return message


MAX_PAYLOAD_DEPTH = 250
"""About what orjson can encode in a frame (255 levels, the frame itself included)."""


def _relayable(payload: dict[str, Any]) -> bool:
    # Whatever is accepted must be encodable again (to other members, to other nodes):
    # orjson refuses integers beyond 64 bits and deep nesting, msgspec decodes both. One
    # C-speed encode of the payload, in its place in a frame, checks both.
    try:
        orjson.dumps({"payload": payload})
    except TypeError:
        return False
    return True


def _is_utf8(data: bytes | str) -> bool:
    if isinstance(data, str):
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _salvage(data: bytes | str, reason: str) -> DecodeError | ApplicationPing:
    # Slow path, only for invalid messages: read what we can to correlate the error frame.
    # msgspec skips unknown keys unchecked, so bad UTF-8 there surfaces only here.
    try:
        raw = orjson.loads(data)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        if not _is_utf8(data):
            return DecodeError(ErrorCode.INVALID_UTF8, "Message is not valid UTF-8", 400)
        raw = None
    if not isinstance(raw, dict):
        return DecodeError(
            ErrorCode.INVALID_MESSAGE, "Invalid message: expected a JSON object", 400
        )
    if raw.get("action") == "ping" and len(raw) <= 2:
        return ApplicationPing()
    request_id = raw.get("requestId")
    channel_name = raw.get("channelName")
    return DecodeError(
        ErrorCode.INVALID_MESSAGE,
        reason,
        400,
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        channel_name=channel_name if isinstance(channel_name, str) and channel_name else None,
    )


def encode_frame(
    action: ServerAction, event: str, channel_name: str, request_id: str, payload: dict[str, Any]
) -> bytes:
    """Serialise one server frame. orjson escapes control characters, so no raw newline."""
    try:
        return orjson.dumps(
            {
                "action": action.value,
                "event": event,
                "channelName": channel_name,
                "requestId": request_id,
                "payload": payload,
            }
        )
    except TypeError as exc:
        raise PayloadError(f"payload of event {event!r} is not JSON-serialisable: {exc}") from exc


def encoded_size(value: dict[str, Any]) -> int:
    """Bytes of ``value`` as compact JSON (how limits on presence are measured)."""
    try:
        return len(orjson.dumps(value))
    except TypeError as exc:
        raise PayloadError(f"value is not JSON-serialisable: {exc}") from exc


def error_payload(code: str, message: str, status: int) -> dict[str, Any]:
    """The JS error payload shape, understood by every client version."""
    return {
        "code": code,
        "message": message,
        "status": status,
        "statusCode": status,
        "error": {"message": message, "status": status},
    }


def protocol_error_frame(error: DecodeError) -> bytes:
    return encode_frame(
        ServerAction.ERROR,
        EVENT_INVALID_MESSAGE,
        error.channel_name or ENDPOINT_CHANNEL,
        error.request_id or new_request_id(),
        error_payload(error.code.value, error.message, error.status),
    )


def heartbeat_frame() -> bytes:
    """The application-level heartbeat (``PondOptions.app_heartbeat_interval``): a
    ``SYSTEM`` frame on the endpoint channel, with a fresh request id each tick."""
    return encode_frame(
        ServerAction.SYSTEM, EVENT_HEARTBEAT, ENDPOINT_CHANNEL, new_request_id(), {}
    )


MAX_CLOSE_REASON = 123
"""Bytes of a close reason: a close frame's payload is at most 125, 2 of them the code."""


def fit_close_reason(reason: str) -> str:
    """``reason`` cut to :data:`MAX_CLOSE_REASON` UTF-8 bytes, never inside a character."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[:MAX_CLOSE_REASON].decode(errors="ignore")
