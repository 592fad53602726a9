"""Endpoint (core/endpoint.py): accepting and declining connections, registering channels,
and the server-side API."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect, settle

from pondsocket import HandlerError, PondSocket, UsageError
from pondsocket.testing import ConnectionDeclined, TestClient


async def test_connection_frame_comes_first_with_connection_id() -> None:
    pond, _ = build()
    conn = await connect(pond, "alice")
    first = conn.frames[0]
    assert (first["action"], first["event"], first["channelName"]) == (
        "CONNECT",
        "CONNECTION",
        "ENDPOINT",
    )
    assert first["payload"] == {"connectionId": conn.id}


async def test_declined_connection_gets_status_and_message() -> None:
    pond, _ = build()
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/api/socket", "token=nope")
    assert (info.value.status, info.value.message) == (401, "bad token")
    assert pond.metrics.connections_declined == 1


# Finding the endpoint is PondSocket's (server.py): no match, no endpoint, 404.
async def test_unknown_endpoint_is_404() -> None:
    pond, _ = build()
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/elsewhere")
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("handler", "status", "message"),
    [
        (
            lambda ctx: None,
            500,
            "Connection handler completed without accepting or declining the request",
        ),
        (lambda ctx: 1 / 0, 500, "Internal Server Error"),
        (lambda ctx: (_ for _ in ()).throw(HandlerError("go away", 403)), 403, "go away"),
    ],
)
async def test_connection_handler_outcomes(handler: Any, status: int, message: str) -> None:
    pond = PondSocket()
    pond.create_endpoint("/s", handler)
    with pytest.raises(ConnectionDeclined) as info:
        await TestClient(pond).connect("/s")
    assert (info.value.status, info.value.message) == (status, message)


# Also PondSocket.create_endpoint (server.py) and the pattern parser (routing/pattern.py).
def test_api_misuse_raises_clear_errors() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    with pytest.raises(UsageError, match="already registered"):
        pond.create_endpoint("/s", lambda ctx: None)
    endpoint.create_channel("/a/:b", lambda ctx: ctx.accept())
    with pytest.raises(UsageError, match="already registered"):
        endpoint.create_channel("/a/:b", lambda ctx: None)
    with pytest.raises(ValueError, match="entire path segment"):
        endpoint.create_channel("/a:b", lambda ctx: None)


# The endpoint's API for the application, and the channels it hands out.
async def test_server_side_api() -> None:
    pond, left = build()
    endpoint = pond.endpoints[0]
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    assert endpoint.channel_names == [LOBBY]
    assert sorted(endpoint.connection_ids) == sorted([a.id, b.id])
    assert endpoint.get_connection_assigns(a.id) == {"name": "a"}
    endpoint.broadcast(LOBBY, "news", {"n": 1})
    endpoint.broadcast("/chat/none", "news", {"n": 1})  # no local members: other nodes only
    assert a.frames[-1]["event"] == "news" and b.frames[-1]["event"] == "news"
    channel = endpoint.get_channel(LOBBY)
    assert channel is not None
    assert channel.get_presence() == {a.id: {"name": "a"}, b.id: {"name": "b"}}
    assert channel.get_assigns()[b.id] == {"name": "b", "role": "user"}
    user = channel.get_user(a.id)
    assert user is not None and user.presence == {"name": "a"}
    channel.evict(b.id, "server says so")
    assert b.frames[-2]["event"] == "kicked_out"
    assert channel.user_ids == [a.id]
    assert endpoint.close_connection(a.id) is True
    assert a.outlet.closed == (4000, "")
    assert endpoint.close_connection("ghost") is False
    await settle()
    assert [c.reason for c in left] == ["evicted:server says so", "connection_closed"]
    assert endpoint.connection_ids == [b.id]
