"""Clients for the standalone transport tests: a websockets client that records frames,
a raw-socket WebSocket client that can stop reading, and a plain HTTP GET."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
TIMEOUT = 5.0  # generous: only a failing test waits this long


class Client:
    """A websockets client whose frames are read continuously by a background task (so
    the server never sees it as a slow consumer) and kept for the test to inspect."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.binary_frames = 0  # the server must send every frame as TEXT
        self._cursor = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        return cls(await connect(url, **kwargs))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    self.binary_frames += 1
                self.frames.append(orjson.loads(raw))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self._changed.set()

    @property
    def connection_id(self) -> str:
        first = self.frames[0]
        assert first["event"] == "CONNECTION"
        return str(first["payload"]["connectionId"])

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def next(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame not read yet, whatever it is."""
        async with asyncio.timeout(timeout):
            while self._cursor >= len(self.frames):
                if self._reader.done():
                    raise AssertionError("connection closed while waiting for a frame")
                await self._wait_change()
        frame = self.frames[self._cursor]
        self._cursor += 1
        return frame

    async def expect(self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        """Skip unread frames until one matches ``predicate``; return it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                if predicate(frame):
                    return frame

    async def send_message(
        self,
        action: str,
        channel: str,
        event: str,
        payload: dict[str, Any] | None = None,
    ) -> str:
        request_id = str(uuid.uuid4())
        message = {
            "action": action,
            "event": event,
            "channelName": channel,
            "requestId": request_id,
            "payload": payload or {},
        }
        await self.ws.send(orjson.dumps(message).decode())
        return request_id

    async def send(self, channel: str, event: str, payload: dict[str, Any] | None = None) -> str:
        return await self.send_message("BROADCAST", channel, event, payload)

    async def join(self, channel: str, payload: dict[str, Any] | None = None) -> Frame:
        """Join and return the answer (ACK or refusal): the next frame of that channel."""
        request_id = await self.send_message("JOIN_CHANNEL", channel, "JOIN_CHANNEL", payload)
        frame = await self.expect(lambda f: f["channelName"] == channel)
        assert frame["requestId"] == request_id, frame
        return frame

    async def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Wait for the connection to end; the close code and reason the server sent."""
        async with asyncio.timeout(timeout):
            await asyncio.wait([self._reader])
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self._reader])


class RawClient:
    """A WebSocket client over a plain non-blocking socket: nothing is read from the socket
    unless the test asks, so it can play a client that stopped reading (or a dead peer that
    never answers pings). Only what these tests need: unfragmented frames."""

    def __init__(self, sock: socket.socket, buffer: bytes) -> None:
        self.sock = sock
        self._buffer = buffer
        self._loop = asyncio.get_running_loop()
        self.connection_id: str | None = None  # known once the CONNECTION frame was read

    @classmethod
    async def connect(cls, port: int, target: str, *, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # A small receive buffer, set before connecting so the window stays small:
            # the server's writes then back up into its own buffers quickly.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {target} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            buffer = b""
            async with asyncio.timeout(TIMEOUT):
                while b"\r\n\r\n" not in buffer:
                    chunk = await loop.sock_recv(sock, 65536)
                    if not chunk:
                        raise AssertionError(f"connection closed during handshake: {buffer!r}")
                    buffer += chunk
        except BaseException:
            sock.close()
            raise
        head, _, rest = buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock, rest)

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self._loop.sock_recv(self.sock, 262144)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server."""
        async with asyncio.timeout(timeout):
            first, second = await self._read_exactly(2)
            assert first & 0x80, "fragmented frames are not expected from the server"
            assert not second & 0x80, "server frames must not be masked"
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._read_exactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._read_exactly(8))
            return first & 0x0F, await self._read_exactly(length)

    async def read_json(self, timeout: float = TIMEOUT) -> Frame:
        """The next text frame, decoded (ping frames are skipped: never answered)."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == 0x9:
                continue
            assert opcode == 0x1, (opcode, payload[:100])
            frame: Frame = orjson.loads(payload)
            if frame["event"] == "CONNECTION":
                self.connection_id = frame["payload"]["connectionId"]
            return frame

    async def send_text(self, text: str) -> None:
        await self._send_frame(0x1, text.encode())

    async def send_close(self, code: int = 1000) -> None:
        await self._send_frame(0x8, struct.pack("!H", code))

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self._loop.sock_sendall(self.sock, header + mask + masked)

    async def join(self, channel: str) -> None:
        """Join ``channel`` and read up to its ACK (frames before it are discarded)."""
        request_id = str(uuid.uuid4())
        message = {
            "action": "JOIN_CHANNEL",
            "event": "JOIN_CHANNEL",
            "channelName": channel,
            "requestId": request_id,
            "payload": {},
        }
        await self.send_text(orjson.dumps(message).decode())
        while True:
            frame = await self.read_json()
            if frame["requestId"] == request_id:
                assert frame["event"] == "ACKNOWLEDGE", frame
                return

    def close(self) -> None:
        self.sock.close()


async def http_get(port: int, target: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET: (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            raw = await reader.read()  # the server closes after its response
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


async def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds (for server-side state such as metrics)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
