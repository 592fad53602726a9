"""Tests of chat_app.py with pondsocket's in-process TestClient: no sockets, no server.

    python -m pytest examples/test_chat_app.py

The way to test your own app: connect, join, send, and read the frames the server sent
each connection (``conn.frames``, ``conn.take()``, ``conn.frames_for(...)``). Needs
pytest and pytest-asyncio; the marks keep it working without ``asyncio_mode = "auto"``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat_app import build
from pondsocket import PondSocket
from pondsocket.testing import ConnectionDeclined, TestClient, TestConnection

pytestmark = pytest.mark.asyncio
LOBBY = "/room/lobby"


@pytest.fixture
def client() -> TestClient:
    pond = PondSocket()  # a fresh server per test: no rooms shared between tests
    build(pond)
    return TestClient(pond)


async def joined(client: TestClient, name: str, room: str = LOBBY) -> TestConnection:
    conn = await client.connect("/socket", query=f"name={name}")
    ack = await conn.join(room)
    assert (ack["action"], ack["event"]) == ("SYSTEM", "ACKNOWLEDGE"), ack
    return conn


def presence(conn: TestConnection) -> list[tuple[str, dict[str, Any]]]:
    """(JOIN/UPDATE/LEAVE, changed) of every presence frame ``conn`` received."""
    return [(f["event"], f["payload"]["changed"]) for f in conn.frames if f["action"] == "PRESENCE"]


async def settle() -> None:
    for _ in range(5):  # a closed connection's leave runs on the next loop iterations
        await asyncio.sleep(0)


async def test_a_connection_without_a_name_is_declined(client: TestClient) -> None:
    with pytest.raises(ConnectionDeclined) as declined:
        await client.connect("/socket")
    assert declined.value.status == 400
    assert "name" in declined.value.message


async def test_the_name_goes_into_the_assigns(client: TestClient) -> None:
    conn = await client.connect("/socket", query="name=%20ann%20")
    assert conn.context.assigns == {"name": "ann"}


async def test_a_bad_room_name_is_declined(client: TestClient) -> None:
    conn = await client.connect("/socket", query="name=ann")
    answer = await conn.join("/room/Not_Valid")
    assert (answer["action"], answer["event"]) == ("SYSTEM", "UNAUTHORIZED")
    assert answer["payload"]["status"] == 400
    assert "lowercase" in answer["payload"]["message"]


async def test_members_see_each_other_join_and_leave(client: TestClient) -> None:
    ann = await joined(client, "ann")
    bob = await joined(client, "bob")
    assert presence(ann) == [
        ("JOIN", {"name": "ann", "status": "online"}),
        ("JOIN", {"name": "bob", "status": "online"}),
    ]
    last = ann.frames_for(LOBBY, action="PRESENCE")[-1]["payload"]["presence"]
    assert sorted(p["name"] for p in last) == ["ann", "bob"]
    await bob.close()
    await settle()
    assert presence(ann)[-1] == ("LEAVE", {"name": "bob", "status": "online"})


async def test_a_message_reaches_every_member(client: TestClient) -> None:
    ann, bob = await joined(client, "ann"), await joined(client, "bob")
    outsider = await joined(client, "cy", "/room/elsewhere")
    await ann.send(LOBBY, "message", {"text": "  hello  "})
    for conn in (ann, bob):
        (frame,) = conn.frames_for(LOBBY, event="message")
        assert frame["payload"] == {"from": "ann", "text": "hello"}
    assert [f for f in outsider.frames if f["event"] == "message"] == []


async def test_an_empty_message_is_refused_and_not_broadcast(client: TestClient) -> None:
    ann, bob = await joined(client, "ann"), await joined(client, "bob")
    answer = await ann.request(LOBBY, "message", {"text": "   "})
    assert (answer["action"], answer["event"]) == ("ERROR", "HANDLER_ERROR")
    assert answer["payload"]["status"] == 400
    assert bob.frames_for(LOBBY, event="message") == []


async def test_ping_is_answered_to_the_sender_only(client: TestClient) -> None:
    ann, bob = await joined(client, "ann"), await joined(client, "bob")
    reply = await ann.request(LOBBY, "ping", {"at": 42})
    assert (reply["action"], reply["event"]) == ("SYSTEM", "pong")
    assert reply["payload"]["at"] == 42
    assert bob.frames_for(LOBBY, event="pong") == []


async def test_a_status_change_updates_presence(client: TestClient) -> None:
    ann, bob = await joined(client, "ann"), await joined(client, "bob")
    await bob.send(LOBBY, "status", {"status": "away"})
    assert presence(ann)[-1] == ("UPDATE", {"name": "bob", "status": "away"})
    refused = await bob.request(LOBBY, "status", {"status": "asleep"})
    assert refused["action"] == "ERROR" and refused["payload"]["status"] == 400
