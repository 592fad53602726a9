"""The connection machinery shared by the ASGI transports (WebSocket and SSE).

:class:`QueuedConnection` is one accepted connection as the core sees it (an
:class:`~pondsocket.core.outlet.Outlet`): a bounded :class:`~pondsocket.transports.outbox.Outbox`,
the overflow policy, and the tasks that move frames, a reader feeding client messages to
the session in arrival order and a writer draining the outbox at the pace of the client.
The WebSocket transport uses it as it is; SSE replaces how frames are written and how the
client's leaving is seen. The core only ever *enqueues* (``Outlet.send`` never awaits), so
a slow client fills its own outbox and never delays delivery to anybody else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pondsocket.core.flow import FlowState, note_backlog
from pondsocket.core.options import OverflowPolicy
from pondsocket.core.outlet import CloseCode
from pondsocket.core.request import ConnectionRequest
from pondsocket.transports.outbox import Outbox
from pondsocket.wire.codec import fit_close_reason, heartbeat_frame

if TYPE_CHECKING:
    from pondsocket.core.session import Session
    from pondsocket.transports.asgi import ASGIApp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("pondsocket.asgi")

OUTBOX_FULL = "outgoing queue full"
TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


class QueuedConnection:
    """One accepted WebSocket: the core's :class:`~pondsocket.core.outlet.Outlet` and the
    tasks that move its frames."""

    __slots__ = (
        "_app",
        "_close_frame",
        "_ended",
        "_heartbeat_interval",
        "_metrics",
        "_outbox",
        "_policy",
        "_receive",
        "_send",
        "_soft",
        "_unsent",
        "_written",
        "flow",
        "id",
    )

    def __init__(self, app: ASGIApp, receive: Receive, send: Send) -> None:
        options = app.pond.options
        self._app = app
        self._receive = receive
        self._send = send
        self._outbox = Outbox(options.outbox_max_bytes)
        self.flow = FlowState(options.outbox_soft_bytes)
        self._soft = self.flow.soft
        self._unsent = 0  # bytes of the batch the writer took and is still writing
        self._written = 0  # bytes the writer has handed to the server (see written())
        self._policy = options.overflow_policy
        self._heartbeat_interval = options.app_heartbeat_interval
        self._metrics = app.pond.metrics
        self._close_frame: tuple[int, str] | None = None
        # Resolved once the connection is over for the core (closed by us or gone).
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.id = "-"

    # -- the Outlet protocol -------------------------------------------------

    def send(self, frame: bytes) -> None:
        outbox = self._outbox
        if not outbox.put(frame):
            self._overflow()
        elif outbox.queued_bytes + self._unsent > self._soft:
            note_backlog(self)  # flow control: the client sending this will wait

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for the writer and not yet written, the batch it is writing
        included (the metrics sample it; flow control reads it)."""
        return self._outbox.queued_bytes + self._unsent

    def close(self, code: int, reason: str) -> None:
        # Queued frames still go out first: a last message sent before closing arrives.
        self._end((code, reason))

    # -- flow control (core/flow.py) -------------------------------------------

    @property
    def closing(self) -> bool:
        return self._ended.done()

    def written(self) -> int:
        return self._written

    def _overflow(self) -> None:
        if self._policy is OverflowPolicy.DROP:
            self._metrics.frames_dropped += 1
            self._app._drops.warning(
                "dropped outgoing frames for clients reading too slowly "
                "(overflow policy 'drop'; total in metrics.frames_dropped)"
            )
            return
        self._metrics.slow_consumer_closes += 1
        log.warning(
            "closing connection %s with %d: %s (%d bytes); the client reads too slowly",
            self.id,
            CloseCode.SLOW_CONSUMER,
            OUTBOX_FULL,
            self._outbox.max_bytes,
        )
        # Flushing a full queue to a slow reader would only delay the close: discard it.
        self._end((CloseCode.SLOW_CONSUMER, OUTBOX_FULL), discard=True)

    def _end(self, close_frame: tuple[int, str] | None, *, discard: bool = False) -> None:
        """Stop accepting frames; ``close_frame`` is None when the client is already gone."""
        if self._ended.done():
            return
        self._close_frame = close_frame
        self._outbox.close(discard=discard)
        self._ended.set_result(None)

    # -- lifecycle -----------------------------------------------------------

    async def run(self, session: Session) -> None:
        self.id = session.connection_id
        writer = self._spawn(self._write_loop(), "writer")
        reader = self._spawn(self._read_loop(session), "reader")
        heartbeat = None
        if self._heartbeat_interval is not None:
            heartbeat = self._spawn(self._heartbeat(self._heartbeat_interval), "heartbeat")
        try:
            # Not waiting for the writer: a slow client must leave its channels as soon as
            # it is closed, even while its close frame is stuck behind unread data.
            await asyncio.wait((reader, self._ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._end(None, discard=True)  # the reader ended first: the client left
            try:
                await session.close()
            finally:
                await self._stop(reader, writer, heartbeat)

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=f"pondsocket-asgi-{role}")

    async def _stop(
        self,
        reader: asyncio.Task[None],
        writer: asyncio.Task[None],
        heartbeat: asyncio.Task[None] | None,
    ) -> None:
        tasks = [reader, writer] if heartbeat is None else [reader, writer, heartbeat]
        if heartbeat is not None:
            heartbeat.cancel()
        try:
            # The writer flushes and sends the close frame, after which the reader sees
            # the disconnect. A client that stopped reading stalls both: bounded.
            await asyncio.wait((reader, writer), timeout=self._app.close_timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_loop(self, session: Session) -> None:
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    return
                if kind != "websocket.receive" or self._ended.done():
                    continue  # once we are closing, late client messages are moot
                text = message.get("text")
                if text is not None:
                    await session.receive(text)  # awaited: messages handled in order
                elif message.get("bytes") is not None:
                    session.receive_binary()
        except Exception:
            log.exception("connection %s: failed handling a client message", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def _write_loop(self) -> None:
        texts = self._app._texts
        try:
            while batch := await self._outbox.take():
                self._unsent = sum(map(len, batch))
                for frame in batch:
                    # ASGI wants str for text frames.
                    await self._send({"type": "websocket.send", "text": texts.decode(frame)})
                    self._unsent -= len(frame)
                    self._written += len(frame)
                del batch, frame  # an idle connection must not keep its last frames alive
            if self._close_frame is not None:
                code, reason = close_args(*self._close_frame)
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            # Client gone (uvicorn raises ClientDisconnected, an OSError).
            self._end(None, discard=True)
        except RuntimeError as exc:
            # uvicorn refuses sends once it closed the socket itself (ping timeout,
            # protocol error): with a single writer that is the only way to get here.
            log.info("connection %s: the server closed the socket (%s)", self.id, exc)
            self._end(None, discard=True)
        except Exception:
            log.warning("connection %s: sending failed", self.id, exc_info=True)
            self._end(None, discard=True)

    async def _heartbeat(self, interval: float) -> None:
        while not self._ended.done():
            await asyncio.sleep(interval)
            self.send(heartbeat_frame())


# -- helpers -----------------------------------------------------------------


def endpoint_path(scope: Scope) -> str:
    """The path endpoint patterns see: below the mount point, percent-escapes intact.

    ``scope["path"]`` is decoded; matching it would decode parameters twice (``%2F`` would
    become a segment separator), so the raw path is used whenever it agrees with it.
    """
    root = scope.get("root_path") or ""
    decoded = _below(scope["path"], root)
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        raw_below = _below(raw.partition(b"?")[0].decode("latin-1"), root)
        if unquote(raw_below) == decoded:
            return raw_below
    return decoded


def _below(path: str, root: str) -> str:
    # Same rule as Starlette: strip the mount prefix only at a segment boundary.
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def connection_request(scope: Scope, path: str, query: str) -> ConnectionRequest:
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
    ]
    client = scope.get("client")
    peer = (str(client[0]), int(client[1])) if client else None
    return ConnectionRequest.from_raw(path, query, headers, peer)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes | None = None,
) -> None:
    kind = TEXT_PLAIN if content_type is None else (b"content-type", content_type)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [kind, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def close_args(code: int, reason: str) -> tuple[int, str]:
    """A code and reason the WebSocket protocol lets a server send (RFC 6455 §7.4)."""
    sendable = code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999
    if not sendable:
        log.warning("close code %d cannot be sent; closing with %d", code, CloseCode.NORMAL)
        code = CloseCode.NORMAL
    return int(code), fit_close_reason(reason)


class TextCache:
    """The decoded text of the last few frames sent, by identity.

    A broadcast hands the *same* bytes object to every recipient, so the first writer
    decodes it and the others reuse the text. A few entries rather than one: writers
    drain whole batches, so after a burst of k broadcasts each writer walks all k frames
    before the next writer runs, and a single entry would miss every time. Holding the
    frames keeps their ids from being reused, so the identity test is exact.
    """

    __slots__ = ("_entries", "_next")

    def __init__(self, size: int = 8) -> None:
        self._entries: list[tuple[bytes, str]] = [(b"", "")] * size
        self._next = 0

    def decode(self, frame: bytes) -> str:
        for cached, text in self._entries:
            if cached is frame:
                return text
        text = frame.decode()
        self._entries[self._next] = (frame, text)
        self._next = (self._next + 1) % len(self._entries)
        return text
