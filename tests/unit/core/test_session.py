"""Session (core/session.py): one connection's inbound messages: joins, events, bad input,
rate limits, and the close."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect, settle

from pondsocket import JoinContext, PondOptions, PondSocket
from pondsocket.testing import TestClient


async def test_join_ack_is_first_channel_frame_and_echoes_request_id() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    ack = await conn.join(LOBBY)
    channel_frames = conn.frames_for(LOBBY)
    assert channel_frames[0] is ack
    assert (ack["action"], ack["event"], ack["payload"]) == ("SYSTEM", "ACKNOWLEDGE", {})
    assert channel_frames[1]["action"] == "PRESENCE"


@pytest.mark.parametrize(
    ("channel", "code", "status", "message"),
    [
        ("/chat/secret", "UNAUTHORIZED_JOIN_REQUEST", 403, "Not allowed"),
        ("/nowhere/x", "CHANNEL_NOT_FOUND", 404, "No channel matches /nowhere/x"),
        ("/chat/crash", "CHANNEL_ERROR", 500, "Internal server error"),
        ("/chat/teapot", "CHANNEL_ERROR", 418, "short and stout"),
        (
            "/chat/undecided",
            "UNAUTHORIZED_JOIN_REQUEST",
            500,
            "Join handler completed without accepting or declining the request",
        ),
    ],
)
async def test_join_refusals_use_the_frame_both_published_clients_understand(
    channel: str, code: str, status: int, message: str
) -> None:
    # npm 0.0.32 declines on event UNAUTHORIZED, PyPI 0.0.6 only on SYSTEM/UNAUTHORIZED.
    pond, _ = build()
    conn = await connect(pond, "alice")
    answer = await conn.join(channel)
    assert (answer["action"], answer["event"], answer["channelName"]) == (
        "SYSTEM",
        "UNAUTHORIZED",
        channel,
    )
    payload = answer["payload"]
    assert (payload["code"], payload["status"], payload["statusCode"], payload["message"]) == (
        code,
        status,
        status,
        message,
    )
    assert len(conn.frames_for(channel)) == 1  # exactly one answer
    assert channel not in pond.endpoints[0].channel_names  # no empty channel left behind


async def test_duplicate_join_is_acknowledged_without_duplicating_membership() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    again = await conn.join(LOBBY)
    assert again["event"] == "ACKNOWLEDGE"
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None and channel.user_ids == [conn.id]


async def test_connection_closed_during_join_handler_leaves_no_member() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    gate = asyncio.Event()

    async def slow_join(ctx: JoinContext) -> None:
        await gate.wait()
        ctx.accept()

    endpoint.create_channel("/r", slow_join)
    conn = await TestClient(pond).connect("/s")
    join = asyncio.create_task(conn.join("/r"))
    await settle()
    await conn.close()
    gate.set()
    with pytest.raises(AssertionError):
        await join  # no ACK was sent
    assert endpoint.get_channel("/r") is None


async def test_unknown_event_gets_not_found_error() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "nope")
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_NOT_FOUND")
    assert answer["payload"]["code"] == 404


async def test_handler_exception_is_hidden_from_client_and_counted() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    answer = await conn.request(LOBBY, "fail")
    assert answer["event"] == "HANDLER_ERROR"
    assert "secret" not in str(answer["payload"])
    assert pond.metrics.handler_errors == 1
    assert (await conn.request(LOBBY, "echo", {"still": "works"}))["payload"] == {"still": "works"}


async def test_event_before_join_is_refused() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    answer = await conn.request(LOBBY, "echo")
    assert (answer["action"], answer["event"], answer["channelName"]) == (
        "ERROR",
        "INVALID_MESSAGE",
        LOBBY,
    )
    assert answer["payload"]["status"] == 404


async def test_disconnect_leaves_every_channel() -> None:
    pond, left = build()
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    for channel in (LOBBY, "/chat/other"):
        await a.join(channel)
        await b.join(channel)
    await a.close()
    await settle()
    assert sorted(c.channel.name for c in left) == ["/chat/lobby", "/chat/other"]
    assert {c.reason for c in left} == {"connection_closed"}
    assert pond.metrics.connections_open == 1
    leaves = [f for f in b.frames if f["action"] == "PRESENCE" and f["event"] == "LEAVE"]
    assert len(leaves) == 2


# Decoding is wire/codec.py's; the error frame and the connection surviving are the session's.
@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"action":"BROADCAST"}',
        '{"action":"NOPE","event":"e","channelName":"c","requestId":"r","payload":{}}',
        '{"action":"BROADCAST","event":"e","channelName":"c","requestId":"r","payload":null}',
    ],
)
async def test_bad_messages_get_exactly_one_error_frame_and_connection_survives(raw: str) -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    conn.take()
    await conn.send_raw(raw)
    frames = conn.take()
    assert len(frames) == 1 and frames[0]["action"] == "ERROR"
    assert frames[0]["payload"]["status"] == 400
    assert (await conn.request(LOBBY, "echo", {"ok": 1}))["payload"] == {"ok": 1}


async def test_binary_frames_are_refused_with_an_error_frame() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    conn.session.receive_binary()
    assert [f["event"] for f in conn.take()] == ["INVALID_MESSAGE"]


async def test_oversized_message_gets_413_and_is_not_processed() -> None:
    pond, _ = build(PondOptions(max_message_size=200))
    conn = await connect(pond, "a")
    await conn.join(LOBBY)
    conn.take()
    await conn.send(LOBBY, "say", {"text": "x" * 300})
    frames = conn.take()
    assert [(f["event"], f["payload"]["status"]) for f in frames] == [("INVALID_MESSAGE", 413)]
    assert (await conn.request(LOBBY, "echo", {"ok": 1}))["payload"] == {"ok": 1}


async def test_application_ping_is_ignored_silently() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    await conn.send_raw('{"action":"ping"}')
    assert conn.take() == []


async def test_flooding_client_is_rate_limited_with_one_error_per_refused_message() -> None:
    pond, _ = build(PondOptions(rate_limit=1.0, rate_burst=5))
    flooder = await connect(pond, "flood")
    calm = await connect(pond, "calm")
    await flooder.join(LOBBY)  # uses one token
    await calm.join(LOBBY)
    flooder.take()
    for _ in range(10):
        await flooder.send(LOBBY, "echo", {"n": 1})
    frames = flooder.take()
    assert [f["event"] for f in frames].count("echo-response") == 4
    limited = [f for f in frames if f["event"] == "INVALID_MESSAGE"]
    assert len(limited) == 6 and {f["payload"]["status"] for f in limited} == {429}
    assert pond.metrics.rate_limited == 6
    assert (await calm.request(LOBBY, "echo", {"fine": 1}))["payload"] == {"fine": 1}


async def test_invalid_utf8_text_closes_the_connection_with_1007() -> None:
    pond, _ = build()
    conn = await connect(pond, "a")
    conn.take()
    await conn.send_raw(b'{"action":"BROADCAST","event":"\xff"}')
    assert conn.take() == []
    assert conn.outlet.closed is not None and conn.outlet.closed[0] == 1007
