"""Lean clients for the burst tests (test_flow_control.py): a WebSocket and an SSE reader
over plain asyncio streams that read as fast as Python can and check the burst's order as
they go, and a sender that writes as fast as the socket takes it. Tens of thousands of
frames per client must not cost the test process more than the server it measures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from typing import Any

import orjson

TIMEOUT = 10.0
_ZERO_MASK = b"\x00\x00\x00\x00"  # a valid mask (RFC 6455 §5.3) that leaves the bytes as they are


def message(action: str, room: str, event: str, payload: dict[str, Any]) -> bytes:
    frame = {
        "action": action,
        "event": event,
        "channelName": room,
        "requestId": "r",
        "payload": payload,
    }
    return orjson.dumps(frame)


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _ZERO_MASK + payload


class Tally:
    """What one reader got of the burst: ``event`` frames numbered ``seq`` from 0."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.pause_at = 0  # > 0: stop reading for ``pause`` seconds after that many frames
        self.pause = 0.0
        self.count = 0
        self.out_of_order: tuple[int, int] | None = None  # (expected, got), the first one
        self.closed: tuple[int, str] | None = None  # the server's close frame
        self.ended = asyncio.Event()

    def frame(self, data: bytes) -> None:
        if self.event.encode() not in data[:64]:  # cheap: the event comes first
            return
        frame = orjson.loads(data)
        if frame["event"] != self.event:
            return
        seq = frame["payload"]["seq"]
        if seq != self.count and self.out_of_order is None:
            self.out_of_order = (self.count, seq)
        self.count += 1

    async def paced(self) -> None:
        """A healthy client that is busy for a moment (a GC pause, a slow frame of its UI)."""
        if self.count == self.pause_at:
            self.pause_at = 0
            await asyncio.sleep(self.pause)


async def _open(port: int, rcvbuf: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock, limit=1 << 20)
    except BaseException:
        sock.close()
        raise


class WsClient:
    """A WebSocket client: ``start_reading()`` counts frames into :attr:`tally`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tally = Tally("say")
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, path: str, *, rcvbuf: int | None = None) -> WsClient:
        reader, writer = await _open(port, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer)
        assert orjson.loads(await client.text())["event"] == "CONNECTION"
        return client

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def text(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            while True:
                opcode, data = await self.read_frame()
                if opcode == 0x1:
                    return data

    def send(self, payload: bytes) -> None:
        self.writer.write(client_frame(payload))

    async def join(self, room: str) -> None:
        self.send(message("JOIN_CHANNEL", room, "JOIN_CHANNEL", {}))
        while orjson.loads(await self.text())["event"] != "ACKNOWLEDGE":
            pass

    def start_reading(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        tally = self.tally
        try:
            while True:
                opcode, data = await self.read_frame()
                if opcode == 0x1:
                    tally.frame(data)
                    await tally.paced()
                elif opcode == 0x8:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    tally.closed = (code, data[2:].decode(errors="replace"))
                    self.writer.write(client_frame(data[:2], opcode=0x8))  # the handshake
                    self.writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            tally.ended.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class SseClient:
    """An SSE stream (chunked ``data:`` events) read into :attr:`tally`; its POSTs go
    through ``post`` (an ``httpx`` client: only the join is posted)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tally = Tally("say")
        self.secret = ""
        self.task: asyncio.Task[None] | None = None
        self._events: list[bytes] = []
        self._rest = b""

    @classmethod
    async def connect(cls, port: int, path: str, *, rcvbuf: int | None = None) -> SseClient:
        reader, writer = await _open(port, rcvbuf)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        async with asyncio.timeout(TIMEOUT):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
        )
        assert head.startswith("HTTP/1.1 200"), head
        assert headers.get("transfer-encoding") == "chunked", head
        client = cls(reader, writer)
        client.secret = headers["x-connection-id"]
        assert orjson.loads(await client.event())["event"] == "CONNECTION"
        return client

    async def _chunk(self) -> bytes:
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            raise EOFError
        return (await self.reader.readexactly(size + 2))[:-2]

    async def _more(self) -> None:
        parts = (self._rest + await self._chunk()).split(b"\n\n")
        self._rest = parts.pop()
        self._events.extend(part for part in parts if part.startswith(b"data: "))

    async def event(self) -> bytes:
        async with asyncio.timeout(TIMEOUT):
            while not self._events:
                await self._more()
        return self._events.pop(0)[6:]

    def start_reading(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        tally = self.tally
        try:
            while True:
                events, self._events = self._events, []
                for data in events:
                    tally.frame(data[6:])
                    await tally.paced()
                await self._more()
        except (EOFError, asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            tally.ended.set()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def send_burst(sender: WsClient, room: str, count: int, pad: int = 1000) -> None:
    """``count`` broadcasts of about ``pad`` bytes, written as fast as the socket takes them."""
    text = "x" * pad
    try:
        for seq in range(count):
            sender.send(message("BROADCAST", room, "say", {"seq": seq, "text": text}))
            if seq % 32 == 31:
                await sender.writer.drain()  # waits only when the kernel stops taking bytes
        await sender.writer.drain()
    except ConnectionError:
        pass  # the server closed the sender (its own copies overflowed, without flow control)
