"""The ASGI transport: serve a :class:`~pondsocket.PondSocket` with uvicorn (or any ASGI 3
server), standalone or mounted in Starlette/FastAPI.

Each accepted WebSocket gets an :class:`~pondsocket.transports.outbox.Outbox` and three
tasks: a reader feeding client messages to the core's session in arrival order, a writer
draining the outbox at the pace of the socket, and (optionally) an application heartbeat.
The core only ever *enqueues* (``Outlet.send`` never awaits), so a slow client fills its
own outbox and never delays delivery to anybody else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pondsocket.core.outlet import CloseCode
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.errors import StartupError
from pondsocket.transports.asgi_connection import (
    ASGIApplication,
    Message,
    QueuedConnection,
    Receive,
    Scope,
    Send,
    TextCache,
    connection_request,
    endpoint_path,
    respond,
)
from pondsocket.transports.host import Host
from pondsocket.transports.sse import SSETransport
from pondsocket.transports.uvicorn_support import uvicorn_config, uvicorn_server

if TYPE_CHECKING:
    import uvicorn


__all__ = [
    "ASGIApp",
    "ASGIApplication",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TextCache",
    "endpoint_path",
]

log = logging.getLogger("pondsocket.asgi")

HTTP_RESPONSE_EXTENSION = "websocket.http.response"


class ASGIApp:
    """A PondSocket server as an ASGI 3 application (``pond.asgi``).

    Run it standalone::

        uvicorn myapp:pond.asgi --ws websockets-sansio \\
            --ws-ping-interval 20 --ws-ping-timeout 20 --ws-max-size 4194304

    or mount it (the host app then owns the lifespan, so hand it ours for a clean
    shutdown)::

        app = FastAPI(lifespan=pond.asgi.lifespan)
        app.mount("/ws", pond.asgi)

    **Paths.** Endpoint patterns see the request path *below the mount point*, undecoded
    (percent-escapes are decoded by the pattern matcher, once), with the query string
    exposed separately: mounted at ``/ws``, a client connecting to
    ``ws://host/ws/api/socket?token=x`` matches the endpoint ``/api/socket``, and
    ``ctx.path`` is ``/api/socket``. Standalone, the pattern sees the whole path. (The
    mount point is ``scope["root_path"]``, which uvicorn's ``--root-path`` also sets.)

    **Handshake.** No matching endpoint answers 404; a declined connection answers with
    the decline status and message (``text/plain``) when the server supports the ASGI
    ``websocket.http.response`` extension (uvicorn does), else the upgrade is refused
    with a close (1008) that servers turn into a bare HTTP 403.

    **Keep-alive and limits** come from the ASGI server, not from this app: uvicorn pings
    every ``--ws-ping-interval`` seconds and drops a peer that does not answer within
    ``--ws-ping-timeout``, and closes frames above ``--ws-max-size`` with 1009. Set them
    from :class:`~pondsocket.PondOptions` with :meth:`uvicorn_options`. Messages between
    ``max_message_size`` and that hard limit get the 413 error frame and the connection
    stays open. ``app_heartbeat_interval`` (application-level heartbeat frames for JS
    clients using ``pingInterval``) is sent by this app.

    **Slow clients.** Each connection's outgoing queue holds ``outbox_max_bytes``; when it
    is full the ``overflow_policy`` applies: ``close`` closes with 4008 (the connection
    leaves its channels at once, while the close frame waits behind what the socket
    already buffered), ``drop`` drops the frame and counts it in ``metrics.frames_dropped``.
    ASGI has no way to abort a socket: this app lets go of a closed connection after
    ``close_timeout`` seconds, but uvicorn keeps the socket of a client that never reads
    again until the peer goes away (its ping timeout closes the transport, which still
    waits for the unsent data to drain).

    **HTTP.** Plain HTTP requests on an endpoint path go to the SSE transport
    (:attr:`sse`, see ``docs/sse.md``; other requests there get 426), others get 404;
    :attr:`http_app`, when set, handles every HTTP request instead.
    """

    def __init__(self, pond: Host, *, close_timeout: float = 10.0) -> None:
        self.pond = pond
        self.close_timeout = close_timeout
        """How long a closing connection may take to flush and send its close frame."""
        self.http_app: ASGIApplication | None = None
        """Handles every ``http`` scope when set (the seam for an SSE transport)."""
        self._texts = TextCache()
        self._drops = RateLimitedLog(log)
        self.sse: SSETransport = SSETransport(self)
        """The SSE transport on endpoint paths (``sse.cors_origin`` enables CORS)."""

    def __repr__(self) -> str:
        return f"<ASGIApp endpoints={[e.path for e in self.pond.endpoints]}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"pondsocket: unsupported ASGI scope type {kind!r}")

    def uvicorn_options(self) -> dict[str, Any]:
        """``uvicorn.Config``/``uvicorn.run`` keyword arguments matching ``pond.options``."""
        options = self.pond.options
        return {
            "ws_max_size": options.transport_frame_limit,
            "ws_ping_interval": options.ping_interval,
            "ws_ping_timeout": options.ping_timeout,
        }

    def uvicorn_config(
        self, *, app: ASGIApplication | None = None, **kwargs: Any
    ) -> uvicorn.Config:
        """A ready ``uvicorn.Config``: :meth:`uvicorn_options` plus ``kwargs`` (host,
        port, ...), and a connection whose request headers are not complete within
        ``PondOptions.handshake_timeout`` is closed (uvicorn alone waits for ever). Run it
        with ``uvicorn.Server(config).run()`` or ``await uvicorn.Server(config).serve()``.
        ``app``: serve that app (a FastAPI or Starlette app that mounts this one) instead
        of this one alone."""
        return uvicorn_config(self, host_app=app, **kwargs)

    def uvicorn_server(
        self, *, app: ASGIApplication | None = None, **kwargs: Any
    ) -> uvicorn.Server:
        """A ``uvicorn.Server`` for :meth:`uvicorn_config` ``(app=app, **kwargs)`` whose
        shutdown (SIGTERM, Ctrl+C) closes this PondSocket first: clients get 1001, SSE
        streams end, leave handlers run, the cluster is flushed; then uvicorn stops. Run
        it with ``.run()`` or ``await ....serve()``. With ``app`` (a host app mounting this
        one, whose lifespan starts it: ``FastAPI(lifespan=pond.asgi.lifespan)``) that
        shutdown still comes first, which a plain ``uvicorn host:app`` cannot do."""
        return uvicorn_server(self, uvicorn_config(self, host_app=app, **kwargs))

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        """Lifespan for a host app that mounts this one (mounted apps get no lifespan
        events): ``FastAPI(lifespan=pond.asgi.lifespan)``. No drain here: a host's
        lifespan shutdown comes after its server closed every connection."""
        await self.pond.startup()
        try:
            yield
        finally:
            await self.pond.shutdown(drain=False)

    # -- websocket -----------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake started
        path = endpoint_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        found = self.pond.match(f"{path}?{query}" if query else path)
        if found is None:
            await _deny(scope, send, 404, "Not Found")
            return
        endpoint, route = found
        ctx = await endpoint.handshake(connection_request(scope, path, query), route)
        if not ctx.accepted:
            await _deny(scope, send, ctx.decline_status, ctx.decline_message)
            return
        try:
            await send({"type": "websocket.accept"})
        except OSError:
            return  # the client vanished during the handshake
        connection = QueuedConnection(self, receive, send)
        session = endpoint.open(ctx, connection)  # queues the CONNECTION frame first
        del ctx  # nothing of the handshake is kept for the connection's life
        await connection.run(session)

    # -- http and lifespan ---------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = endpoint_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        answer = await self.pond.http_request(
            str(scope.get("method", "GET")), path, lambda: connection_request(scope, path, query)
        )
        if answer is not None:
            headers = [(name.encode(), value.encode()) for name, value in answer.headers]
            await respond(
                send, answer.status, answer.body, headers, content_type=answer.content_type.encode()
            )
            return
        if self.http_app is not None:
            await self.http_app(scope, receive, send)
            return
        if self.pond.match(endpoint_path(scope)) is not None:
            await self.sse(scope, receive, send)
        else:
            await respond(send, 404, b"Not Found")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.pond.startup()
                except StartupError as exc:  # the broker: one line, which the server logs
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:
                    log.exception("pondsocket startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:  # no drain: the server has closed every connection by now
                    await self.pond.shutdown(drain=False)
                except Exception as exc:
                    log.exception("pondsocket shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return


async def _deny(scope: Scope, send: Send, status: int, message: str) -> None:
    try:
        if HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
            body = message.encode()
            # No framing headers: uvicorn adds Content-Length and Content-Type itself, and
            # 0.35-0.52 append ours to its own, a duplicate Content-Length that strict
            # clients (websockets 14) refuse to parse.
            await send({"type": "websocket.http.response.start", "status": status, "headers": []})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            # Without the extension ASGI can only refuse the upgrade with a close.
            await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
    except OSError:
        pass  # the client is gone; nobody to tell
