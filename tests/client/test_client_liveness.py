"""The Python client's presence updates, and its keep-alive: a server that stops answering
(a frozen TCP path: no close, no RST) is detected by its pings and reconnected to."""

from __future__ import annotations

import asyncio

from pondsocket.client import ChannelState, ConnectionState, PresenceChange
from tests.client.test_client import TIMEOUT, client, next_message, start
from tests.tcp_proxy import TcpProxy


async def test_presence_update_callback() -> None:
    server, port = await start()
    try:
        async with client(port, "ada") as a, client(port, "bob") as b:
            room = await a.channel("/room/u").join()
            updates: list[PresenceChange] = []
            room.presence.on_update(updates.append)
            other = await b.channel("/room/u").join()
            await other.send("rename", {"name": "robert"})
            async with asyncio.timeout(TIMEOUT):
                while not updates:
                    await asyncio.sleep(0.01)
            assert updates[0].kind == "UPDATE" and updates[0].changed["name"] == "robert"
            assert sorted(u["name"] for u in room.presence.users) == ["ada", "robert"]
    finally:
        await server.aclose()


async def test_a_server_that_stops_answering_is_detected_and_left() -> None:
    server, port = await start()
    proxy = TcpProxy(port)
    proxy_port = await proxy.start()
    a = client(
        proxy_port,
        "ada",
        ping_interval=0.2,
        ping_timeout=0.5,
        close_timeout=0.3,  # the closing handshake a dead server never answers
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    try:
        async with client(port, "bob") as b:  # direct, to speak in the room meanwhile
            await a.connect()
            room = await a.channel("/room/frozen").join()
            first_id = a.connection_id
            proxy.freeze()  # the path goes silent; nothing tells the client
            await a.state.wait_for(ConnectionState.RECONNECTING, timeout=TIMEOUT)
            await room.state.wait_for(ChannelState.JOINED, timeout=TIMEOUT)
            assert a.connection_id != first_id and proxy.connections == 2
            await (await b.channel("/room/frozen").join()).send("say", {"text": "still here"})
            got = await next_message(room, "said")
            assert got.payload["text"] == "still here"
    finally:
        await a.close()
        await proxy.aclose()
        await server.aclose()
