"""Channel (core/channel.py): delivery to its members, leaving and eviction, presence
delivery, its size limit and its coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.unit.core.chat_app import LOBBY, build, connect, settle

from pondsocket import OutgoingContext, PondOptions, PondSocket, PresenceTooLargeError
from pondsocket.testing import TestClient


async def test_broadcast_variants_reach_exactly_the_right_members() -> None:
    pond, _ = build()
    a, b, c = [await connect(pond, n) for n in ("a", "b", "c")]
    for conn in (a, b, c):
        await conn.join(LOBBY)
    for conn in (a, b, c):
        conn.take()
    await a.send(LOBBY, "say", {"text": "all"})
    await a.send(LOBBY, "whisper", {"text": "psst", "to": [b.id]})
    await a.send(LOBBY, "others", {"text": "not me"})
    got = {name: [f["event"] for f in conn.take()] for name, conn in (("a", a), ("b", b), ("c", c))}
    assert got == {
        "a": ["message"],
        "b": ["message", "whisper", "others"],
        "c": ["message", "others"],
    }


async def test_broadcast_to_non_member_is_an_error_for_the_sender() -> None:
    pond, _ = build()
    a = await connect(pond, "a")
    await a.join(LOBBY)
    answer = await a.request(LOBBY, "whisper", {"text": "x", "to": ["ghost"]})
    assert (answer["event"], answer["payload"]["status"]) == ("HANDLER_ERROR", 500)


async def test_broadcast_hands_every_recipient_the_same_encoded_bytes() -> None:
    pond, _ = build()
    conns = [await connect(pond, f"u{i}") for i in range(5)]
    for conn in conns:
        await conn.join(LOBBY)
    sent: list[bytes] = []
    for conn in conns:
        original = conn.outlet.send

        def spy(frame: bytes, original: Any = original) -> None:
            sent.append(frame)
            original(frame)

        conn.outlet.send = spy  # type: ignore[method-assign]
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None
    channel.broadcast("news", {"n": 1})
    assert len(sent) == 5
    assert all(frame is sent[0] for frame in sent)  # encoded once, not per recipient


# The channel runs the outgoing handlers per recipient (OutgoingContext only holds the verdict).
async def test_outgoing_handlers_transform_and_block_per_recipient() -> None:
    pond, _ = build()
    lobby = pond.endpoints[0].find_lobby(LOBBY)
    assert lobby is not None

    @lobby[0].on_outgoing("message")
    def censor(ctx: OutgoingContext) -> None:
        if ctx.user.assigns.get("name") == "blocked":
            ctx.block()
        elif ctx.user.assigns.get("name") == "b":
            ctx.transform({**ctx.payload, "text": "***"})

    a, b, c = [await connect(pond, n) for n in ("a", "b", "blocked")]
    for conn in (a, b, c):
        await conn.join(LOBBY)
    for conn in (a, b, c):
        conn.take()
    await a.send(LOBBY, "say", {"text": "rude"})
    assert [f["payload"]["text"] for f in a.take()] == ["rude"]
    assert [f["payload"]["text"] for f in b.take()] == ["***"]
    assert c.take() == []


async def test_leave_runs_leave_handler_with_last_data_and_destroys_empty_channel() -> None:
    pond, left = build()
    conn = await connect(pond, "alice")
    await conn.join(LOBBY)
    await conn.leave(LOBBY)
    await settle()
    assert [(c.user.id, c.reason, c.user.presence) for c in left] == [
        (conn.id, "explicit_leave", {"name": "alice"})
    ]
    assert pond.endpoints[0].get_channel(LOBBY) is None
    answer = await conn.request(LOBBY, "echo")
    assert answer["event"] == "INVALID_MESSAGE"  # no longer a member


async def test_eviction_notifies_and_stops_delivery() -> None:
    pond, left = build()
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a.take()
    b.take()
    await a.send(LOBBY, "kick", {"user": b.id})
    b_frames = b.take()
    assert [(f["action"], f["event"]) for f in b_frames] == [
        ("SYSTEM", "kicked_out"),
        ("SYSTEM", "kicked"),
    ]
    # Both notice shapes: JS {message, code}, Go and upstream Python {reason}.
    assert b_frames[0]["payload"] == {"reason": "bye", "message": "bye", "code": 403}
    a_frames = a.take()
    assert [(f["action"], f["event"]) for f in a_frames] == [
        ("SYSTEM", "kicked"),
        ("PRESENCE", "LEAVE"),
    ]
    assert a_frames[0]["payload"] == {"userId": b.id, "reason": "bye"}
    await a.send(LOBBY, "say", {"text": "after"})
    assert b.take() == []
    await settle()
    assert left[-1].reason == "evicted:bye"


async def test_untracked_members_get_no_presence_frames() -> None:
    pond = PondSocket()
    endpoint = pond.create_endpoint("/s", lambda ctx: ctx.accept())
    endpoint.create_channel("/quiet", lambda ctx: ctx.accept())
    loud = endpoint.create_channel("/loud", lambda ctx: ctx.accept().track({"n": 1}))
    del loud
    quiet = await TestClient(pond).connect("/s")
    await quiet.join("/quiet")
    channel = endpoint.get_channel("/quiet")
    assert channel is not None
    other = await TestClient(pond).connect("/s")
    await other.join("/quiet")
    channel.track(other.id, {"n": 2})
    assert quiet.frames_for("/quiet", action="PRESENCE") == []
    assert len(other.frames_for("/quiet", action="PRESENCE")) == 1


async def test_presence_coalescing_sends_one_frame_per_window_with_the_full_list() -> None:
    pond, _ = build(PondOptions(presence_coalesce_window=0.05))
    first = await connect(pond, "u0")
    await first.join(LOBBY)  # an isolated change goes out at once
    assert [f["event"] for f in first.frames_for(LOBBY, action="PRESENCE")] == ["JOIN"]
    others = [await connect(pond, f"u{i}") for i in range(1, 30)]
    for conn in others:
        await conn.join(LOBBY)
    await asyncio.sleep(0.12)  # two windows
    frames = first.frames_for(LOBBY, action="PRESENCE")
    assert len(frames) <= 3  # not one per join (30)
    final = frames[-1]["payload"]
    assert sorted(p["name"] for p in final["presence"]) == sorted(f"u{i}" for i in range(30))
    assert final["changed"] == {"name": "u29"}  # the window's last change
    last = others[-1].frames_for(LOBBY, action="PRESENCE")[-1]["payload"]["presence"]
    assert len(last) == 30  # late joiners get the complete list too


async def test_a_presence_above_max_presence_bytes_is_refused_with_413() -> None:
    pond, _ = build()  # default max_presence_bytes: 4 KiB
    a = await connect(pond, "a")
    b = await connect(pond, "b")
    await a.join(LOBBY)
    await b.join(LOBBY)
    a.take()
    answer = await b.request(LOBBY, "status", {"status": "x" * 5000})
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_ERROR")
    assert answer["payload"]["status"] == 413
    assert "max_presence_bytes" in answer["payload"]["message"]
    assert a.take() == []  # nobody received the amplified list
    channel = pond.endpoints[0].get_channel(LOBBY)
    assert channel is not None
    with pytest.raises(PresenceTooLargeError):
        channel.update_presence(b.id, {"blob": "y" * 4097})
    channel.update_presence(b.id, {"status": "fine"})  # a small one still works
    assert channel.get_presence()[b.id] == {"status": "fine"}


async def test_max_presence_bytes_none_lifts_the_limit() -> None:
    pond, _ = build(PondOptions(max_presence_bytes=None))
    a = await connect(pond, "a")
    await a.join(LOBBY)
    await a.send(LOBBY, "status", {"status": "x" * 5000})
    update = a.frames_for(LOBBY, action="PRESENCE")[-1]
    assert (update["event"], len(update["payload"]["changed"]["status"])) == ("UPDATE", 5000)
