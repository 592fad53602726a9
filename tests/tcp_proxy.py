"""A TCP proxy for tests on real sockets: forwards a local port to a server, keeps every
byte the clients sent (``sent``), and can ``freeze()`` the connections open now (they stay
open but move nothing: a path gone silent, no FIN, no RST)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = bytearray()
        self.connections = 0
        self._frozen: set[int] = set()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        """Stop moving bytes on the connections open now; new ones are forwarded."""
        self._frozen.add(self._generation)
        self._generation += 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        generation = self._generation
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for pipe, upstream in (((reader, up_writer), True), ((up_reader, writer), False)):
            task = asyncio.create_task(self._pipe(*pipe, generation, record=upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        generation: int,
        *,
        record: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if generation in self._frozen:
                    continue  # swallowed: the peer hears nothing
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # one side went away: close the other below
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
