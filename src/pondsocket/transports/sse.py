"""The SSE transport (docs/sse.md), served by :class:`~pondsocket.transports.asgi.ASGIApp`
on every endpoint path for plain HTTP requests.

* ``GET <endpoint>?<query>`` with ``Accept: text/event-stream`` runs the connection
  handler; accepted, the response is an event stream whose first event is the CONNECTION
  frame. Every server frame is one ``data: <json>`` event (never an ``event:`` field: the
  JS SSE client only listens to ``message`` events); ``: keepalive`` comments go out every
  ``ping_interval``.
* ``POST`` (same URL, ``X-Connection-ID`` header, one JSON client message as the body)
  feeds the connection; ``202``, the answer comes on the stream.
* ``DELETE`` (same URL, ``X-Connection-ID``) closes the connection; ``204``.

A stream is a WebSocket connection in all but the transport: the same bounded outbox,
overflow policy, application heartbeat and close handling (it subclasses the WebSocket
connection (:class:`~pondsocket.transports.asgi_connection.QueuedConnection`) and only
replaces how frames are written and how the client's leaving is seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from pondsocket.core.origin import origin_policy
from pondsocket.core.outlet import CloseCode
from pondsocket.transports.asgi_connection import (
    QueuedConnection,
    Receive,
    Scope,
    Send,
    connection_request,
    endpoint_path,
    respond,
)

if TYPE_CHECKING:
    from pondsocket.core.contexts import ConnectionContext
    from pondsocket.core.endpoint import Endpoint
    from pondsocket.core.session import Session
    from pondsocket.transports.asgi import ASGIApp

__all__ = ["SSETransport"]

log = logging.getLogger("pondsocket.sse")

CONNECTION_ID_HEADER = "x-connection-id"
KEEPALIVE = b": keepalive\n\n"


class _Disconnected(Exception):
    """The client went away while we read its request body."""


class SSETransport:
    """Serves SSE on endpoint paths (``pond.asgi.sse``).

    Set :attr:`cors_origin` (e.g. ``"https://app.example"`` or ``"*"``) to answer CORS
    preflights and add CORS headers to every SSE response; :attr:`cors_credentials` adds
    ``Access-Control-Allow-Credentials: true`` (not allowed with ``"*"`` by browsers).
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._streams: dict[str, _Stream] = {}
        self.cors_origin: str | None = None
        self.cors_credentials = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if method == "OPTIONS" and self.cors_origin is not None:
            await self._reply(send, 204, b"", _PREFLIGHT)
        elif method == "GET" and "text/event-stream" in headers.get("accept", ""):
            await self._open(scope, receive, send)
        elif method in ("POST", "DELETE"):
            await self._message(scope, receive, send, method, headers)
        else:
            upgrade = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
            await respond(send, 426, b"Upgrade Required", upgrade)

    # -- the stream ----------------------------------------------------------

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        path = endpoint_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        found = app.pond.match(f"{path}?{query}" if query else path)
        if found is None:
            await self._reply(send, 404, b"Not Found")
            return
        endpoint, route = found
        ctx = await endpoint.handshake(connection_request(scope, path, query), route)
        if not ctx.accepted:
            await self._reply(send, ctx.decline_status, ctx.decline_message.encode())
            return
        # The POSTs' credential is a secret of the stream's own, never the user id: other
        # members can learn a user id (the channel's `kicked` notice carries it).
        secret = secrets.token_urlsafe(32)
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"connection", b"keep-alive"),
            (b"x-accel-buffering", b"no"),
            (b"x-connection-id", secret.encode()),
            *self._cors(),
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        except OSError:
            return  # the client vanished during the handshake
        stream = _Stream(app, receive, send)
        self._streams[secret] = stream
        try:
            await stream.open(endpoint, ctx, secret)
        finally:
            self._streams.pop(secret, None)

    # -- POST and DELETE -----------------------------------------------------

    async def _message(
        self, scope: Scope, receive: Receive, send: Send, method: str, headers: dict[str, str]
    ) -> None:
        policy = origin_policy(self._app.pond.options.allowed_origins)
        if not policy.allows(headers.get("origin"), headers.get("host")):
            self._app.pond.metrics.origin_refused += 1
            await self._reply(send, 403, b"Origin not allowed")  # as for the stream itself
            return
        connection_id = headers.get(CONNECTION_ID_HEADER, "").strip()
        if not connection_id:
            await self._reply(send, 400, b"X-Connection-ID header required")
            return
        stream = self._streams.get(connection_id)
        if stream is None or stream.endpoint_path != endpoint_path(scope):
            await self._reply(send, 404, b"Connection not found")
            return
        if method == "DELETE":
            stream.close(CloseCode.NORMAL, "client disconnected")
            await self._reply(send, 204, b"")
            return
        limit = self._app.pond.options.max_message_size
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        try:
            body = None if declared > limit else await _read_body(receive, limit)
        except _Disconnected:
            return
        if body is None:
            await self._reply(send, 413, f"Message exceeds {limit} bytes".encode())
        elif await stream.receive(body):
            await self._reply(send, 202, b"")
        else:
            await self._reply(send, 404, b"Connection is closing")

    # -- helpers -------------------------------------------------------------

    def _cors(self) -> list[tuple[bytes, bytes]]:
        if self.cors_origin is None:
            return []
        headers = [
            (b"access-control-allow-origin", self.cors_origin.encode()),
            (b"access-control-expose-headers", b"X-Connection-ID"),
        ]
        if self.cors_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    async def _reply(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        with contextlib.suppress(OSError):  # the client is gone; nobody to tell
            await respond(send, status, body, [*self._cors(), *(headers or ())])


_PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, X-Connection-ID"),
]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Stream(QueuedConnection):
    """One accepted SSE connection: a WebSocket connection that writes ``data:`` events
    and learns of the client's leaving from ``http.disconnect``."""

    def __init__(self, app: ASGIApp, receive: Receive, send: Send) -> None:
        super().__init__(app, receive, send)
        self._keepalive = app.pond.options.ping_interval
        self._session: Session | None = None
        self._inbound = asyncio.Lock()  # POSTed messages are handled one at a time
        self.endpoint_path = ""

    async def open(self, endpoint: Endpoint, ctx: ConnectionContext, secret: str) -> None:
        """Open the session and run the stream until the client leaves; the CONNECTION
        frame gives the client ``secret`` as its connection id, for its POSTs."""
        self.endpoint_path = ctx.path
        session = endpoint.open(ctx, self, client_id=secret)  # the CONNECTION frame first
        del ctx
        await self.run(session)

    async def receive(self, body: bytes) -> bool:
        """Handle one POSTed client message; False when the connection is closing."""
        async with self._inbound:
            if self._session is None or self._ended.done():
                return False
            try:
                await self._session.receive(body)
            except Exception:
                log.exception("connection %s: failed handling a client message", self.id)
                self.close(CloseCode.INTERNAL_ERROR, "Internal server error")
            return True

    async def _read_loop(self, session: Session) -> None:
        self._session = session
        # A GET has an empty body; after it, the only message left is the disconnect.
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def _write_loop(self) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        batch = await self._outbox.take()
                except TimeoutError:
                    await self._write(KEEPALIVE)
                    continue
                if not batch:
                    break
                body = b"".join(b"data: " + frame + b"\n\n" for frame in batch)
                self._unsent = sum(map(len, batch))
                await self._write(body)
                self._written += self._unsent
                self._unsent = 0
                del batch, body  # an idle stream must not keep its last frames alive
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            log.info("connection %s: writing the stream failed", self.id, exc_info=True)
            self._end(None, discard=True)

    async def _write(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})
