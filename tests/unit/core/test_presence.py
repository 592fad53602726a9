"""Presence (core/presence.py) through a channel: what presence frames carry, and misuse."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect

from pondsocket import NotJoinedError, PayloadError, PondSocket, PresenceError
from pondsocket.testing import TestClient


# The channel sends the frames; the change they carry is the presence table's.
async def test_presence_frames_carry_changed_and_full_list() -> None:
    pond, _ = build()
    a = await connect(pond, "alice")
    b = await connect(pond, "bob")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a_presence = [f for f in a.frames_for(LOBBY, action="PRESENCE")]
    assert [(f["event"], f["payload"]["changed"]) for f in a_presence] == [
        ("JOIN", {"name": "alice"}),
        ("JOIN", {"name": "bob"}),
    ]
    assert a_presence[-1]["payload"]["presence"] == [{"name": "alice"}, {"name": "bob"}]
    await b.send(LOBBY, "status", {"status": "away"})
    update = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert update["event"] == "UPDATE"
    assert update["payload"]["changed"] == {"name": "bob", "status": "away"}
    b.take()
    ack = await b.leave(LOBBY)
    # Go and upstream Python acknowledge a leave; the PyPI client 0.0.6 and ported apps rely on it.
    assert (ack["action"], ack["event"], ack["payload"]) == ("SYSTEM", "EXIT_ACKNOWLEDGE", {})
    assert [f["event"] for f in b.take()] == ["EXIT_ACKNOWLEDGE"]  # and nothing else
    leave = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert leave["event"] == "LEAVE"
    assert leave["payload"] == {
        "changed": {"name": "bob", "status": "away"},
        "presence": [{"name": "alice"}],
    }


def test_presence_misuse_raises() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    endpoint.create_channel("/r", lambda ctx: ctx.accept())

    async def scenario() -> None:
        conn = await TestClient(pond).connect("/s")
        await conn.join("/r")
        channel = endpoint.get_channel("/r")
        assert channel is not None
        with pytest.raises(PresenceError):
            channel.update_presence(conn.id, {})
        channel.track(conn.id, {"a": 1})
        with pytest.raises(PresenceError):
            channel.track(conn.id, {"a": 1})
        with pytest.raises(PayloadError):
            channel.update_presence(conn.id, "online")  # type: ignore[arg-type]
        with pytest.raises(NotJoinedError):
            channel.track("ghost", {})
        channel.upsert_presence(conn.id, {"a": 2})
        assert channel.get_presence() == {conn.id: {"a": 2}}

    asyncio.run(scenario())
