"""Drive a PondSocket server in process, without sockets: for application tests.

```python
async def test_echo():
    client = TestClient(pond)
    conn = await client.connect("/api/socket", query="token=abc")
    await conn.join("/chat/lobby", {"name": "alice"})
    reply = await conn.request("/chat/lobby", "echo", {"text": "hi"})
    assert reply["payload"] == {"text": "hi"}
```
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from pondsocket.core.contexts import ConnectionContext
from pondsocket.core.request import ConnectionRequest
from pondsocket.core.session import Session
from pondsocket.errors import PondSocketError
from pondsocket.server import PondSocket

Frame = dict[str, Any]


class ConnectionDeclined(PondSocketError):
    """:meth:`TestClient.connect` was refused: no endpoint matched (404) or the connection
    handler declined; ``status`` and ``message`` say how."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"connection declined: {status} {message}")
        self.status, self.message = status, message


class RecordingOutlet:
    """An outlet that keeps every frame it is given, decoded. Closing it ends the session
    on the next loop iteration, as a transport would once the socket is gone."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed: tuple[int, str] | None = None
        self.session: Session | None = None
        self._closing: asyncio.Task[None] | None = None

    def send(self, frame: bytes) -> None:
        if self.closed is None:
            self.frames.append(orjson.loads(frame))

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            if self.session is not None:
                self._closing = asyncio.get_running_loop().create_task(self.session.close())


class TestConnection:
    """One accepted in-process connection, from :meth:`TestClient.connect`: send it client
    messages and read the frames the server sent it (decoded, in order)."""

    __test__ = False  # not a pytest class

    def __init__(self, session: Session, outlet: RecordingOutlet, ctx: ConnectionContext) -> None:
        self.session = session
        """The server's session of this connection."""
        self.outlet = outlet
        """Where the server's frames land."""
        self.context = ctx
        """The connection handler's context (its assigns, its decision)."""
        self._read = 0

    @property
    def id(self) -> str:
        """The connection id (the user id)."""
        return self.session.connection_id

    @property
    def frames(self) -> list[Frame]:
        """Every frame received so far."""
        return self.outlet.frames

    def take(self) -> list[Frame]:
        """Frames received since the last ``take()``."""
        new = self.outlet.frames[self._read :]
        self._read = len(self.outlet.frames)
        return new

    def frames_for(self, channel: str, **match: Any) -> list[Frame]:
        """Frames received for ``channel`` whose fields equal ``match``
        (``frames_for("/room/1", event="message")``)."""
        return [
            f
            for f in self.outlet.frames
            if f["channelName"] == channel and all(f.get(k) == v for k, v in match.items())
        ]

    async def send_raw(self, data: bytes | str) -> None:
        """Hand the server a text message as the client wrote it."""
        await self.session.receive(data)

    async def send_message(
        self,
        action: str,
        channel: str,
        event: str,
        payload: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> str:
        """Send a client message (``action`` ``JOIN_CHANNEL``, ``BROADCAST`` or
        ``LEAVE_CHANNEL``); returns its request id (a new UUID unless given)."""
        request_id = request_id or str(uuid.uuid4())
        message = {
            "action": action,
            "event": event,
            "channelName": channel,
            "requestId": request_id,
            "payload": payload or {},
        }
        await self.session.receive(orjson.dumps(message))
        return request_id

    async def join(self, channel: str, payload: dict[str, Any] | None = None) -> Frame:
        """Join; returns the ACK or the refusal frame."""
        request_id = await self.send_message("JOIN_CHANNEL", channel, "JOIN_CHANNEL", payload)
        return self._answer(request_id)

    async def send(self, channel: str, event: str, payload: dict[str, Any] | None = None) -> str:
        """Send an event to a joined channel; returns its request id."""
        return await self.send_message("BROADCAST", channel, event, payload)

    async def request(
        self, channel: str, event: str, payload: dict[str, Any] | None = None
    ) -> Frame:
        """Send an event and return the first non-presence frame echoing its requestId."""
        request_id = await self.send(channel, event, payload)
        return self._answer(request_id)

    async def leave(self, channel: str) -> Frame:
        """Leave; returns the ``EXIT_ACKNOWLEDGE`` (or the error frame)."""
        request_id = await self.send_message("LEAVE_CHANNEL", channel, "LEAVE_CHANNEL")
        return self._answer(request_id)

    async def close(self) -> None:
        """End the connection as a closed socket would: it leaves every channel."""
        await self.session.close()

    def _answer(self, request_id: str) -> Frame:
        for frame in self.outlet.frames:
            if frame["requestId"] == request_id and frame["action"] != "PRESENCE":
                return frame
        raise AssertionError(f"no frame answered request {request_id}")


class TestClient:
    """Connects to a :class:`PondSocket` in process, through its endpoints' handlers, with
    no sockets and no server running (see this module's docstring for an example)."""

    __test__ = False

    def __init__(self, pond: PondSocket) -> None:
        self.pond = pond
        """The server connected to."""

    async def connect(
        self,
        path: str,
        query: str = "",
        headers: dict[str, str] | None = None,
        client: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> TestConnection:
        """Run the connection handler; raises :class:`ConnectionDeclined` when declined."""
        found = self.pond.match(f"{path}?{query}" if query else path)
        if found is None:
            raise ConnectionDeclined(404, "Not Found")
        endpoint, route = found
        request = ConnectionRequest.from_raw(path, query, (headers or {}).items(), client)
        ctx = await endpoint.handshake(request, route)
        if not ctx.accepted:
            raise ConnectionDeclined(ctx.decline_status, ctx.decline_message)
        outlet = RecordingOutlet()
        session = endpoint.open(ctx, outlet)
        outlet.session = session
        return TestConnection(session, outlet, ctx)
