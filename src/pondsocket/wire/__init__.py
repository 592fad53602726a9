"""Wire protocol: message types and the codec. No I/O."""

from pondsocket.wire.codec import (
    ApplicationPing,
    DecodeError,
    decode_client_message,
    encode_frame,
    error_payload,
    new_request_id,
    protocol_error_frame,
)
from pondsocket.wire.messages import (
    ENDPOINT_CHANNEL,
    ClientAction,
    ClientMessage,
    ErrorCode,
    PresenceEvent,
    ServerAction,
)

__all__ = [
    "ENDPOINT_CHANNEL",
    "ApplicationPing",
    "ClientAction",
    "ClientMessage",
    "DecodeError",
    "ErrorCode",
    "PresenceEvent",
    "ServerAction",
    "decode_client_message",
    "encode_frame",
    "error_payload",
    "new_request_id",
    "protocol_error_frame",
]
