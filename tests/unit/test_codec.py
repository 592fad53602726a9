import orjson
import pytest

from pondsocket.errors import PayloadError
from pondsocket.wire import (
    ApplicationPing,
    ClientMessage,
    DecodeError,
    ErrorCode,
    ServerAction,
    decode_client_message,
    encode_frame,
    protocol_error_frame,
)
from pondsocket.wire.codec import MAX_CLOSE_REASON, fit_close_reason, heartbeat_frame
from pondsocket.wire.messages import ENDPOINT_CHANNEL

VALID: dict[str, object] = {
    "action": "BROADCAST",
    "event": "/echo",
    "channelName": "/chat/lobby",
    "requestId": "r1",
    "payload": {"message": "hello"},
}


def dump(**changes: object) -> bytes:
    message = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            message.pop(key)
        else:
            message[key] = value
    return orjson.dumps(message)


def test_decodes_valid_message_from_bytes_and_str() -> None:
    for data in (dump(), dump().decode()):
        message = decode_client_message(data)
        assert isinstance(message, ClientMessage)
        assert (message.action, message.event, message.payload) == (
            "BROADCAST",
            "/echo",
            {"message": "hello"},
        )


@pytest.mark.parametrize(
    "data",
    [
        dump(payload=None),
        dump(payload=[1]),
        dump(payload="x"),
        dump(event=...),
        dump(requestId=5),
        dump(action="ASSIGNS"),
        dump(action="broadcast"),
        dump(channelName=""),
        dump(requestId=""),
    ],
)
def test_schema_violations_are_errors_that_keep_what_can_be_read(data: bytes) -> None:
    result = decode_client_message(data)
    assert isinstance(result, DecodeError)
    assert result.status == 400
    assert result.code is ErrorCode.INVALID_MESSAGE


def test_error_keeps_request_id_and_channel_for_correlation() -> None:
    result = decode_client_message(dump(payload=[1]))
    assert isinstance(result, DecodeError)
    assert (result.request_id, result.channel_name) == ("r1", "/chat/lobby")


@pytest.mark.parametrize("data", [b"not json", b"[1,2]", b"42", b'"str"', b"", b"{", "\u00e9"])
def test_malformed_input_never_raises(data: bytes | str) -> None:
    result = decode_client_message(data)
    assert isinstance(result, DecodeError)
    assert result.request_id is None


def test_application_ping_is_recognised() -> None:
    assert isinstance(decode_client_message(b'{"action":"ping"}'), ApplicationPing)


def test_encode_frame_is_compact_json_without_newlines() -> None:
    frame = encode_frame(ServerAction.BROADCAST, "e", "/c", "r", {"text": "a\nb"})
    assert b"\n" not in frame
    assert orjson.loads(frame) == {
        "action": "BROADCAST",
        "event": "e",
        "channelName": "/c",
        "requestId": "r",
        "payload": {"text": "a\nb"},
    }


def test_encode_rejects_unserialisable_payload() -> None:
    with pytest.raises(PayloadError):
        encode_frame(ServerAction.BROADCAST, "e", "/c", "r", {"x": object()})


def test_protocol_error_frame_falls_back_to_endpoint_channel() -> None:
    frame = orjson.loads(protocol_error_frame(DecodeError(ErrorCode.INVALID_MESSAGE, "bad", 400)))
    assert frame["action"] == "ERROR"
    assert frame["event"] == "INVALID_MESSAGE"
    assert frame["channelName"] == "ENDPOINT"
    assert frame["requestId"]
    assert frame["payload"]["status"] == 400
    assert frame["payload"]["error"] == {"message": "bad", "status": 400}


def test_random_ids_are_version_4_uuids_and_unique() -> None:
    import uuid

    from pondsocket.wire.ids import random_hex, random_uuid

    ids = [random_uuid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    tokens = {random_hex() for _ in range(1000)}
    assert len(tokens) == 1000 and all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)


@pytest.mark.parametrize(
    "data",
    [
        b'{"action":"BROADCAST","event":"\xff"}',
        b'{"action":"BROADCAST","event":"/e","channelName":"/c","requestId":"r","payload":{"m":"\xc3("}}',
        b'{"\xed\xa0\x80":1}',  # an encoded surrogate is not UTF-8 either
        b"\xff\xfe{}",
    ],
)
def test_invalid_utf8_is_reported_as_such_whatever_msgspec_raises(data: bytes) -> None:
    # msgspec <= 0.22 raised UnicodeDecodeError here and 0.23 raises DecodeError.
    result = decode_client_message(data)
    assert isinstance(result, DecodeError)
    assert result.code is ErrorCode.INVALID_UTF8


def test_malformed_but_valid_utf8_is_not_called_invalid_utf8() -> None:
    result = decode_client_message('{"action": "BROADCAST", "event": "é'.encode())
    assert isinstance(result, DecodeError)
    assert result.code is ErrorCode.INVALID_MESSAGE


def test_close_reasons_fit_a_close_frame_without_splitting_a_character() -> None:
    assert fit_close_reason("server shutting down") == "server shutting down"
    assert fit_close_reason("x" * 123) == "x" * 123
    cut = fit_close_reason("é" * 100)  # 200 bytes of 2-byte characters
    assert cut == "é" * 61 and len(cut.encode()) == 122 <= MAX_CLOSE_REASON


def test_heartbeat_frames_are_system_frames_with_a_fresh_request_id() -> None:
    first, second = orjson.loads(heartbeat_frame()), orjson.loads(heartbeat_frame())
    assert first["action"] == "SYSTEM" and first["event"] == "HEARTBEAT"
    assert first["channelName"] == ENDPOINT_CHANNEL and first["payload"] == {}
    assert first["requestId"] != second["requestId"]
