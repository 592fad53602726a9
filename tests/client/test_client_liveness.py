"""The Python client's presence updates, and its keep-alive: a server that stops answering
(a frozen TCP path: no close, no RST) is detected by its pings and reconnected to."""

from __future__ import annotations

import asyncio
import contextlib

from pondsocket.client import ChannelState, ConnectionState, PresenceChange
from tests.client.test_client import TIMEOUT, client, next_message, start


class FreezableProxy:
    """Forwards a local port to the server; ``freeze()`` stops moving bytes on the
    connections open now (they stay open), new connections are forwarded normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._frozen: set[int] = set()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        self._frozen.add(self._generation)
        self._generation += 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        generation = self._generation
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for pipe in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(*pipe, generation))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        try:
            while data := await reader.read(65536):
                if generation in self._frozen:
                    continue  # swallowed: the peer hears nothing, and no FIN either
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()


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
    proxy = FreezableProxy(port)
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
