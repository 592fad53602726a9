"""What NatsPubSub.subscribe() promises: when it returns, the server has the subscription.
A recording TCP proxy between the backend and the machine's NATS shows the order of the
client's commands on the wire: the SUB must precede the PING whose PONG ended the call
(nats-py 2.16's own flush() writes that PING ahead of a SUB it has queued)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pondsocket.pubsub.nats import NatsPubSub
from tests.nats.conftest import MACHINE_NATS_PORT, unique_prefix
from tests.pubsub_conformance import Inbox


class RecordingProxy:
    """Forwards one port to NATS and keeps every byte the clients sent."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", MACHINE_NATS_PORT)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, record=True)),
            asyncio.create_task(self._pipe(up_reader, writer, record=False)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxied_bus(prefix: str) -> AsyncIterator[tuple[NatsPubSub, RecordingProxy]]:
    proxy = RecordingProxy()
    port = await proxy.start()
    bus = await NatsPubSub.connect(f"nats://127.0.0.1:{port}", subject_prefix=prefix)
    try:
        yield bus, proxy
    finally:
        await bus.close()
        await proxy.aclose()


async def test_subscribe_returns_after_the_server_has_the_sub(machine_nats: str) -> None:
    prefix = unique_prefix()
    async with proxied_bus(prefix) as (bus, proxy):
        for pattern in ("pond:room:1", "pond:ro.*"):
            before = len(proxy.sent)
            await bus.subscribe(pattern, Inbox())
            written = bytes(proxy.sent[before:])
            subject = bus._codec.pattern(pattern)[0].encode()
            sub_at = written.find(b"SUB " + subject + b" ")
            assert sub_at >= 0, written
            # the PONG that ended subscribe() answered a PING written after the SUB
            assert b"PING\r\n" in written[sub_at:], written


async def test_a_message_published_right_after_subscribe_arrives(machine_nats: str) -> None:
    prefix = unique_prefix()
    other = await NatsPubSub.connect(machine_nats, subject_prefix=prefix)
    try:
        async with proxied_bus(prefix) as (bus, _):
            for n in range(20):
                exact, pattern = Inbox(), Inbox()
                await bus.subscribe(f"pond:room:{n}", exact)
                await bus.subscribe(f"pond:ro{n}.*", pattern)
                await other.publish(f"pond:room:{n}", b"x")
                await other.publish(f"pond:ro{n}x", b"y")
                await exact.wait_for(1)
                await pattern.wait_for(1)
    finally:
        await other.close()
