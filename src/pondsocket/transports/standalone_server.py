"""The standalone server: :class:`StandaloneServer`, PondSocket on the ``websockets``
asyncio server (>= 14), from accepting a connection to the graceful shutdown.

Why websockets' *new* asyncio server: its ``process_request`` hook may be a coroutine, so
the (possibly async) connection handler runs *before* the HTTP upgrade is answered and a
decline becomes a real HTTP status (docs/protocol.md). picows is faster but its upgrade
hook is synchronous. Writes go through :class:`WebSocketOutlet` (``standalone_outlet.py``),
plain HTTP answers are built in ``standalone_http.py``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from pondsocket.core.contexts import ConnectionContext
from pondsocket.core.endpoint import Endpoint
from pondsocket.core.outlet import CloseCode
from pondsocket.core.session import Session
from pondsocket.errors import UsageError
from pondsocket.transports.batching import FrameCache, WriteBatcher
from pondsocket.transports.host import Host
from pondsocket.transports.keepalive import keepalive_loop
from pondsocket.transports.standalone_http import (
    HttpRoutes,
    answer_plain_request,
    connection_request,
    is_upgrade,
    text_response,
)
from pondsocket.transports.standalone_outlet import WebSocketOutlet
from pondsocket.wire.codec import heartbeat_frame

__all__ = ["StandaloneServer"]

log = logging.getLogger("pondsocket.standalone")
# websockets logs two INFO lines per connection (open, closed): a flood under load or an
# attack. They go to this logger, quiet unless the app sets its level (DEBUG, INFO) itself.
connection_log = logging.getLogger("pondsocket.standalone.connections")
if connection_log.level == logging.NOTSET:
    connection_log.setLevel(logging.WARNING)

# Arguments the transport owns; passing them through ``**ws_kwargs`` would break it.
_RESERVED_KWARGS = frozenset({"handler", "process_request"})
# websockets' own write flow control only makes its pings and close frames wait behind our
# (already bounded) buffer, which would hide a dead peer under the DROP policy. The outlet
# bounds the buffer, so the high-water mark is set out of reach.
_NO_WRITE_PAUSE = 2**31 - 1  # uvloop stores the limits in a C int
_LISTEN_BACKLOG = 2048


class StandaloneServer:
    """One listening server for a :class:`PondSocket`; also an async context manager::

    server = StandaloneServer(pond, "127.0.0.1", 0)
    port = await server.start()
    ...
    await server.aclose()  # graceful: 1001 to clients, leave handlers run
    """

    def __init__(
        self,
        pond: Host,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        http_routes: HttpRoutes | None = None,
        shutdown_timeout: float = 10.0,
        **ws_kwargs: Any,
    ) -> None:
        reserved = _RESERVED_KWARGS.intersection(ws_kwargs)
        if reserved:
            raise UsageError(f"the standalone transport sets {', '.join(sorted(reserved))}")
        options = pond.options
        self._pond = pond
        self._host = host
        self._port = port
        self._http_routes: dict[str, tuple[str, bytes]] = dict(http_routes or {})
        self._shutdown_timeout = shutdown_timeout
        self._ws_kwargs: dict[str, Any] = {
            # Above this websockets closes with 1009; Session answers 413 below it.
            "max_size": options.transport_frame_limit,
            # Keep-alive is one sweep for the server (transports/keepalive.py), not a task
            # per connection; passing ping_interval here brings websockets' own back.
            "ping_interval": None,
            # permessage-deflate costs 2-3x CPU per delivery; opt in with compression=.
            "compression": None,
            "write_limit": _NO_WRITE_PAUSE,
            # asyncio's default of 100 pending accepts drops SYNs under a reconnect storm
            # (clients then wait 1 s, 3 s, ... to retry); uvicorn listens with 2048 too.
            "backlog": _LISTEN_BACKLOG,
            # Reading the request and running the connection handler: the core refuses a
            # slow handler with 408 at handshake_timeout; this ends slow clients too.
            "open_timeout": options.handshake_timeout + 2.0,
            "logger": connection_log,
            **ws_kwargs,
        }
        self._server: Server | None = None
        self._outlets: set[WebSocketOutlet] = set()
        self._frames = FrameCache()
        self._batcher = WriteBatcher()
        self._accepted: weakref.WeakKeyDictionary[
            ServerConnection, tuple[ConnectionContext, Endpoint]
        ] = weakref.WeakKeyDictionary()
        self._keepalive = None if "ping_interval" in ws_kwargs else options.ping_interval
        self._timers: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise UsageError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        """Bind and start accepting connections; returns the bound port."""
        if self._server is not None:
            raise UsageError("the server is already started")
        await self._pond.startup()
        self._server = await ws_serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._process_request,
            **self._ws_kwargs,
        )
        options = self._pond.options
        if options.app_heartbeat_interval is not None:
            self._timers.append(
                asyncio.create_task(self._heartbeat_loop(options.app_heartbeat_interval))
            )
        if self._keepalive is not None:
            keepalive = keepalive_loop(lambda: self._outlets, self._keepalive, options.ping_timeout)
            self._timers.append(asyncio.create_task(keepalive))
        return self.port

    async def wait_closed(self) -> None:
        """Return once the server is closed (by :meth:`aclose`)."""
        if self._server is not None:
            await self._server.wait_closed()

    async def aclose(self) -> None:
        """Graceful shutdown: drain for ``PondOptions.drain_grace`` seconds (not ready, still
        serving), refuse new connections, close open ones with 1001, wait for
        their sessions to end (leave handlers), then shut the :class:`PondSocket` down."""
        if self._closed:
            return
        self._closed = True
        # Draining (PondOptions.drain_grace): not ready, while sockets, new connections and
        # keep-alives still work, so a load balancer moves clients elsewhere first.
        await self._pond.drain()
        timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if timers:
            await asyncio.wait(timers)
        self._pond.begin_shutdown()  # a session waiting for the broker must not hold on
        server = self._server
        if server is not None:
            # Closing through websockets first (rather than pond.shutdown() first) means
            # every session has ended, and spawned its leave handlers, before the pond
            # drains its tasks and closes the pubsub.
            server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
            try:
                async with asyncio.timeout(self._shutdown_timeout):
                    await server.wait_closed()
            except TimeoutError:
                log.warning(
                    "connections still open after %.1fs; aborting them", self._shutdown_timeout
                )
                await self._force_close(server)
        await self._pond.shutdown()

    async def _force_close(self, server: Server) -> None:
        # Dropping the TCP connections ends every recv(), hence every session; a handler
        # still stuck in application code after that is cancelled.
        for outlet in list(self._outlets):
            outlet.abort()
        try:
            async with asyncio.timeout(1.0):
                await server.wait_closed()
        except TimeoutError:
            for task in list(server.handler_tasks):
                task.cancel()
            await server.wait_closed()

    async def __aenter__(self) -> StandaloneServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- websockets hooks ------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if not is_upgrade(request.headers):
            return await answer_plain_request(self._pond, self._http_routes, connection, request)
        target = request.path  # the request target: path plus optional ?query
        found = self._pond.match(target)  # the pattern splits the query off itself
        if found is None:
            return text_response(404, "Not Found")
        endpoint, route = found
        if "Sec-WebSocket-Key" not in request.headers:
            # websockets would refuse it after the app's handler ran: refuse it before
            return text_response(400, "Missing Sec-WebSocket-Key header")
        path, _, query = target.partition("?")
        conn_request = connection_request(connection, request, path, query)
        ctx = await endpoint.handshake(conn_request, route)
        if not ctx.accepted:
            return text_response(ctx.decline_status, ctx.decline_message)
        # Handed to _handle; a weak key, so a handshake that fails afterwards leaks nothing.
        self._accepted[connection] = (ctx, endpoint)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        accepted = self._accepted.pop(connection, None)
        if accepted is None:  # pragma: no cover - only accepted handshakes get here
            return
        ctx, endpoint = accepted
        connection_id = ctx.connection_id
        outlet = WebSocketOutlet(connection, self._pond, connection_id, self._frames, self._batcher)
        session = endpoint.open(ctx, outlet)  # sends the CONNECTION frame first
        del ctx, accepted  # nothing of the handshake is kept for the connection's life
        _release_handshake(connection)
        self._outlets.add(outlet)
        try:
            await self._receive_loop(connection, session, outlet)
        except ConnectionClosed:
            pass  # any close, clean or not, ends the session the same way
        except Exception:
            log.exception("connection %s failed", connection_id)
            outlet.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._outlets.discard(outlet)
            outlet.detach()
            await session.close()

    @staticmethod
    async def _receive_loop(
        connection: ServerConnection, session: Session, outlet: WebSocketOutlet
    ) -> None:
        protocol = connection.protocol
        while True:
            # Text comes as str (websockets checks UTF-8 and closes 1007 on bad text, RFC
            # 6455 §8.1), binary as bytes: inbound is not the hot path, fan-out is.
            data = await connection.recv()
            if protocol.state is not OPEN:
                continue  # we are closing: what the client sent meanwhile is moot
            if isinstance(data, bytes):
                session.receive_binary()
                continue
            await session.receive(data)  # awaited: one connection's messages stay in order

    async def _heartbeat_loop(self, interval: float) -> None:
        # One timer for the whole server, one encoded frame per tick shared by everyone.
        while True:
            await asyncio.sleep(interval)
            frame = heartbeat_frame()
            for outlet in list(self._outlets):
                outlet.send(frame)


def _release_handshake(connection: ServerConnection) -> None:
    # websockets keeps the opening handshake for the connection's life (the request is
    # also held by its frame parser, so dropping the reference would not free it). The
    # session has what it needs; the headers (about 3 KiB) go now, since idle memory per
    # connection is what bounds a node. websockets reads neither after the handshake.
    if connection.request is not None:
        connection.request.headers.clear()
    connection.response = None
