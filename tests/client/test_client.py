"""The Python client against a real StandaloneServer over loopback sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pondsocket.client import (
    ChannelState,
    ClientTimeoutError,
    ConnectError,
    ConnectionState,
    HandshakeRefusedError,
    JoinDeclinedError,
    Message,
    PondClient,
    PresenceChange,
    ReconnectFailedError,
    Recovery,
    RequestFailedError,
)
from pondsocket.transports.standalone import StandaloneServer
from tests.client.app import TOKEN, make_app

TIMEOUT = 5.0


async def start(port: int = 0) -> tuple[StandaloneServer, int]:
    pond, _ = make_app()
    server = StandaloneServer(pond, "127.0.0.1", port)
    return server, await server.start()


def client(port: int, name: str = "ada", **options: Any) -> PondClient:
    return PondClient(
        f"ws://127.0.0.1:{port}/socket", query={"token": TOKEN, "name": name}, **options
    )


async def next_message(channel: Any, event: str) -> Message:
    async with asyncio.timeout(TIMEOUT):
        async for message in channel:
            if message.event == event:
                return message  # type: ignore[no-any-return]
    raise AssertionError(f"the channel ended before {event!r}")


async def test_join_broadcast_request_and_leave() -> None:
    server, port = await start()
    try:
        async with client(port, "ada") as a, client(port, "bob") as b:
            assert a.state.value is ConnectionState.CONNECTED and a.connection_id
            room_a = await a.channel("/room/1").join()
            room_b = await b.channel("/room/1").join()
            seen: list[Message] = []
            room_b.on("said", seen.append)
            await room_a.send("say", {"text": "hi"})
            got = await next_message(room_b, "said")
            assert got.payload == {"from": "ada", "text": "hi"}
            assert seen == [got]
            reply = await room_b.request("whoami", {"x": 1}, timeout=TIMEOUT)
            assert (reply.action, reply.event) == ("SYSTEM", "you")
            assert reply.payload == {"name": "bob", "echo": {"x": 1}}
            await room_b.leave()
            assert room_b.state.value is ChannelState.CLOSED
            with pytest.raises(Exception, match="CLOSED"):
                await room_b.send("say", {})
    finally:
        await server.aclose()


async def test_request_timeout_and_error_reply() -> None:
    server, port = await start()
    try:
        async with client(port) as a:
            room = await a.channel("/room/1").join()
            with pytest.raises(ClientTimeoutError, match="silent"):
                await room.request("silent", {}, timeout=0.3)
            with pytest.raises(RequestFailedError) as failed:
                await room.request("boom", {}, timeout=TIMEOUT)
            assert failed.value.status == 404 and "no such thing" in failed.value.message
            assert room.state.value is ChannelState.JOINED  # still usable
            assert (await room.request("whoami", {})).event == "you"
    finally:
        await server.aclose()


async def test_presence_callbacks() -> None:
    server, port = await start()
    try:
        async with client(port, "ada") as a:
            room = a.channel("/room/p")
            changes: list[PresenceChange] = []
            room.presence.on_change(changes.append)
            joins: list[str] = []
            leaves: list[str] = []
            room.presence.on_join(lambda c: joins.append(c.changed["name"]))
            room.presence.on_leave(lambda c: leaves.append(c.changed["name"]))
            await room.join()
            async with client(port, "bob") as b:
                await b.channel("/room/p").join()
                async with asyncio.timeout(TIMEOUT):
                    while "bob" not in joins:
                        await asyncio.sleep(0.01)
                assert sorted(u["name"] for u in room.presence.users) == ["ada", "bob"]
            async with asyncio.timeout(TIMEOUT):
                while "bob" not in leaves:
                    await asyncio.sleep(0.01)
            assert [u["name"] for u in room.presence.users] == ["ada"]
            assert [c.kind for c in changes][-1] == "LEAVE"
    finally:
        await server.aclose()


async def test_declined_join_and_refused_handshake() -> None:
    server, port = await start()
    try:
        async with client(port) as a:
            with pytest.raises(JoinDeclinedError) as declined:
                await a.channel("/room/secret").join()
            assert declined.value.status == 403 and declined.value.message == "private room"
            assert a.channel("/room/secret").state.value is ChannelState.DECLINED
            assert a.state.value is ConnectionState.CONNECTED  # the connection is fine
        bad = PondClient(f"ws://127.0.0.1:{port}/socket", query={"token": "wrong"})
        with pytest.raises(HandshakeRefusedError) as refused:
            await bad.connect()
        assert refused.value.status == 401
        assert bad.state.value is ConnectionState.FAILED
    finally:
        await server.aclose()


async def test_nothing_listening_is_a_connect_error() -> None:
    server, port = await start()
    await server.aclose()
    with pytest.raises(ConnectError):
        await client(port, connect_timeout=2).connect()


async def test_reconnect_after_restart_rejoins() -> None:
    server, port = await start()
    a = client(port, backoff_initial=0.05, backoff_max=0.2)
    try:
        await a.connect()
        room = await a.channel("/room/r").join()
        first_id = a.connection_id
        await server.aclose()
        await room.state.wait_for(ChannelState.STALLED, timeout=TIMEOUT)
        server, _ = await start(port)  # a new server on the same port
        await room.state.wait_for(ChannelState.JOINED, timeout=TIMEOUT)
        assert a.connection_id != first_id and a.reconnects == 1
        assert (await room.request("whoami", {})).payload["name"] == "ada"
    finally:
        await a.close()
        await server.aclose()


async def test_refusal_on_reconnect_stops_retrying() -> None:
    server, port = await start()
    a = client(port, backoff_initial=0.05)
    try:
        await a.connect()
        room = await a.channel("/room/r").join()
        await server.aclose()
        a.url = a.url.replace("token=ok", "token=revoked")  # the token was revoked meanwhile
        server, _ = await start(port)
        await a.state.wait_for(ConnectionState.FAILED, timeout=TIMEOUT)
        assert isinstance(a.error, HandshakeRefusedError) and a.error.status == 401
        assert room.state.value is ChannelState.CLOSED
        with pytest.raises(HandshakeRefusedError):
            await room.join()
        with pytest.raises(HandshakeRefusedError):
            await a.wait_closed()
    finally:
        await a.close()
        await server.aclose()


async def test_recovery_after_socket_abort_delivers_everything_in_order() -> None:
    pond, endpoint = make_app()
    server = StandaloneServer(pond, "127.0.0.1", 0)
    port = await server.start()
    total = 600
    a = client(port, backoff_initial=0.3, backoff_max=0.5, backoff_jitter=0)
    try:
        await a.connect()
        room = a.channel("/hist/1")
        recoveries: list[Recovery] = []
        room.on_recovery(recoveries.append)
        got: list[int] = []
        room.on("tick", lambda m: got.append(m.payload["n"]))
        await room.join()

        async def tick() -> None:
            for n in range(total):
                endpoint.broadcast("/hist/1", "tick", {"n": n})
                await asyncio.sleep(0.002)

        ticker = asyncio.create_task(tick())
        async with asyncio.timeout(TIMEOUT):
            while len(got) < 50:
                await asyncio.sleep(0.005)
        assert a._ws is not None
        a._ws.transport.abort()  # no close frame: the socket just dies
        await ticker
        async with asyncio.timeout(TIMEOUT):
            while len(got) < total:
                await asyncio.sleep(0.01)
        assert got == list(range(total))
        assert [r.requested for r in recoveries] == [False, True]
        assert recoveries[0].reason == "not_requested" and recoveries[0].recoverable
        assert recoveries[1].recovered and recoveries[1].missed > 0
        assert a.reconnects == 1
    finally:
        await a.close()
        await server.aclose()


async def test_async_for_buffer_drops_oldest_when_full() -> None:
    pond, endpoint = make_app()
    server = StandaloneServer(pond, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with client(port, max_buffered_messages=10) as a:
            room = await a.channel("/room/b").join()
            for n in range(25):
                endpoint.broadcast("/room/b", "n", {"n": n})
            await room.request("whoami", {})  # after every broadcast, on the same socket
            numbers = []
            async with asyncio.timeout(TIMEOUT):
                async for message in room:
                    if message.event == "n":
                        numbers.append(message.payload["n"])
                    if len(numbers) == 10:
                        break
            assert numbers == list(range(15, 25)) and room.dropped == 15
    finally:
        await server.aclose()


async def test_close_ends_iteration_and_pending_waits() -> None:
    server, port = await start()
    try:
        a = client(port)
        await a.connect()
        room = await a.channel("/room/c").join()
        iteration = asyncio.create_task(next_message(room, "never"))
        request = asyncio.create_task(room.request("silent", {}, timeout=30))
        await asyncio.sleep(0.1)
        await a.close()
        with pytest.raises(AssertionError, match="ended"):
            await iteration
        with pytest.raises(Exception, match="closed"):
            await request
        assert a.state.value is ConnectionState.CLOSED
    finally:
        await server.aclose()


async def test_reconnect_gives_up_after_max_attempts() -> None:
    server, port = await start()
    a = client(port, backoff_initial=0.05, backoff_max=0.1, max_attempts=2)
    try:
        await a.connect()
        room = await a.channel("/room/g").join()
        await server.aclose()  # nothing listens on the port any more
        await a.state.wait_for(ConnectionState.FAILED, timeout=TIMEOUT)
        assert isinstance(a.error, ReconnectFailedError) and "2 attempts" in str(a.error)
        assert room.state.value is ChannelState.CLOSED
        with pytest.raises(ReconnectFailedError):
            async for _ in room:
                pass
    finally:
        await a.close()
