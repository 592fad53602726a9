"""Standalone transport: PondSocket served by the ``websockets`` asyncio server (>= 14).

Why websockets' *new* asyncio server: its ``process_request`` hook may be a coroutine, so
the (possibly async) connection handler runs *before* the HTTP upgrade is answered and a
decline becomes a real HTTP status (docs/protocol.md). picows is faster but its upgrade
hook is synchronous.

Outgoing frames bypass ``await connection.send()``: the core's fan-out calls
:meth:`WebSocketOutlet.send` synchronously once per recipient; the frame is built once
per broadcast and written to the transport at the end of the loop's pass, together with
whatever else that connection got in the same pass (``batching.py``). The per-connection
bound (``outbox_max_bytes``) covers those frames and the transport's write buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import signal
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ProtocolError
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from pondsocket.core.contexts import ConnectionContext
from pondsocket.core.endpoint import Endpoint
from pondsocket.core.flow import FlowState, note_backlog
from pondsocket.core.options import OverflowPolicy
from pondsocket.core.outlet import CloseCode
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.core.request import ConnectionRequest
from pondsocket.core.session import Session
from pondsocket.errors import UsageError
from pondsocket.runtime import tune_gc as tune_process_gc
from pondsocket.transports.batching import FrameCache, WriteBatcher
from pondsocket.transports.host import Host
from pondsocket.transports.keepalive import keepalive_loop
from pondsocket.wire.codec import encode_frame, new_request_id
from pondsocket.wire.messages import ENDPOINT_CHANNEL, EVENT_HEARTBEAT, ServerAction

__all__ = ["StandaloneServer", "WebSocketOutlet", "run", "serve"]

log = logging.getLogger("pondsocket.standalone")
# websockets logs two INFO lines per connection (open, closed): a flood under load or an
# attack. They go to this logger, quiet unless the app sets its level (DEBUG, INFO) itself.
connection_log = logging.getLogger("pondsocket.standalone.connections")
if connection_log.level == logging.NOTSET:
    connection_log.setLevel(logging.WARNING)

HttpRoutes = Mapping[str, tuple[str, bytes]]
"""Exact path -> (content type, body), served to plain HTTP GETs."""

# Arguments the transport owns; passing them through ``**ws_kwargs`` would break it.
_RESERVED_KWARGS = frozenset({"handler", "process_request"})
# websockets' own write flow control only makes its pings and close frames wait behind our
# (already bounded) buffer, which would hide a dead peer under the DROP policy. The outlet
# bounds the buffer, so the high-water mark is set out of reach.
_NO_WRITE_PAUSE = 2**31 - 1  # uvloop stores the limits in a C int
# One line per 10 s for the whole server, however many slow clients drop frames.
_drops = RateLimitedLog(log)
_LISTEN_BACKLOG = 2048
_MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125 (2 for the code)


class WebSocketOutlet:
    """The core's write side of one connection: synchronous, ordered, bounded."""

    __slots__ = (
        "_abort_timer",
        "_backlogged",
        "_batcher",
        "_closing",
        "_connection",
        "_drop",
        "_frames",
        "_id",
        "_limit",
        "_metrics",
        "_protocol",
        "_queued",
        "_queued_bytes",
        "_soft",
        "_transport",
        "flow",
    )

    def __init__(
        self,
        connection: ServerConnection,
        pond: Host,
        connection_id: str,
        frames: FrameCache | None = None,
        batcher: WriteBatcher | None = None,
    ):
        self._connection = connection
        self._protocol = connection.protocol
        self._transport = connection.transport
        # Shared frames only suit a connection without extensions (no per-connection
        # compression state); the others frame each message through websockets.
        self._frames = frames if not connection.protocol.extensions else None
        self._batcher = batcher if self._frames is not None else None
        self._queued: list[bytes] | None = None  # frames of this pass, not yet written
        self._queued_bytes = 0
        self._id = connection_id
        self._limit = pond.options.outbox_max_bytes
        self.flow = FlowState(pond.options.outbox_soft_bytes)
        self._soft = self.flow.soft
        self._backlogged = 0  # bytes sent while others were still pending (see written())
        self._drop = pond.options.overflow_policy is OverflowPolicy.DROP
        self._metrics = pond.metrics
        self._closing = False
        self._abort_timer: asyncio.TimerHandle | None = None

    def send(self, frame: bytes) -> None:
        if self._closing or self._protocol.state is not OPEN:
            return  # closing: the client resyncs on reconnect, nothing more is owed to it
        # The bound is checked before writing, so the buffer never grows past the limit,
        # except for a single frame larger than the limit written to an empty buffer
        # (otherwise such a frame could never be delivered, even to a fast client).
        pending = self._transport.get_write_buffer_size() + self._queued_bytes
        if pending:  # nothing more than the original test while the client keeps up
            if pending + len(frame) > self._limit:
                self._overflow(pending)
                return
            self._backlogged += len(frame)
            if pending > self._soft:
                note_backlog(self)  # flow control: the client sending this will wait
        try:
            if self._frames is not None:
                framed = self._frames.frame(frame)
                if self._batcher is None:
                    self._transport.write(framed)
                elif self._queued is None:
                    self._queued = [framed]
                    self._queued_bytes = len(framed)
                    self._batcher.defer(self.flush)
                else:
                    self._queued.append(framed)
                    self._queued_bytes += len(framed)
            else:
                # What websockets.broadcast() does: frame the bytes as a TEXT message in
                # the sans-I/O protocol (no await), then flush its output.
                self._protocol.send_text(frame)
                self._connection.send_data()
        except Exception as exc:  # the transport is going away: recv() will end the session
            log.debug("connection %s: write failed: %r", self._id, exc)
            self._closing = True

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet written to the socket (the metrics sample it)."""
        return self._transport.get_write_buffer_size() + self._queued_bytes

    def flush(self) -> None:
        """Write the frames queued during this pass of the loop, in one write."""
        queued, self._queued, self._queued_bytes = self._queued, None, 0
        if not queued or self._protocol.state is not OPEN:
            return  # websockets closed it meanwhile: no data may follow its close frame
        try:
            # websockets writes its own frames (pongs, close) to the transport as it makes
            # them, so whole frames written here never split one of them.
            self._transport.write(queued[0] if len(queued) == 1 else b"".join(queued))
        except Exception as exc:
            log.debug("connection %s: write failed: %r", self._id, exc)
            self._closing = True

    # -- flow control (core/flow.py) -------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing or self._protocol.state is not OPEN

    def written(self) -> int:
        # Grows only as the kernel takes bytes: what was sent while a backlog existed,
        # less the backlog. Payload bytes are counted, a little less than what is
        # pending (frame headers), so a client that reads nothing never seems to; with
        # compression (frames smaller than payloads) a stuck client may seem to read, and
        # is then only no longer waited for after outbox_stuck_timeout, not closed.
        return self._backlogged - self.pending_bytes

    async def ping(self) -> asyncio.Future[float] | None:
        """Send a keep-alive ping; the future completes on the pong (``None``: closing)."""
        if self._closing or self._protocol.state is not OPEN:
            return None
        try:
            return asyncio.ensure_future(await self._connection.ping())
        except ConnectionClosed:
            return None

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self.flush()  # what was sent before closing goes before the close frame
        self._closing = True
        if self._protocol.state is OPEN:
            reason = reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore")
            try:
                try:
                    self._protocol.send_close(code, reason)
                except ProtocolError:  # a code the RFC does not allow on the wire
                    self._protocol.send_close(CloseCode.INTERNAL_ERROR, reason)
                self._connection.send_data()
            except Exception as exc:
                log.debug("connection %s: close failed: %r", self._id, exc)
                self._transport.abort()
                return
        # Connection.close() would also wait for the handshake, but it is a coroutine and
        # close() must not await: a client that never answers is aborted after the same
        # ``close_timeout`` (a slow consumer's close frame waits behind its full buffer).
        timeout = self._connection.close_timeout
        if timeout is not None and self._abort_timer is None:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(timeout, self._transport.abort)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._closing = True
        self._queued, self._queued_bytes = None, 0
        self._transport.abort()

    def detach(self) -> None:
        """The connection has ended: stop writing, cancel the pending abort."""
        self._closing = True
        self._queued, self._queued_bytes = None, 0
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None

    def _overflow(self, pending: int) -> None:
        if self._drop:
            self._metrics.frames_dropped += 1
            _drops.warning(
                "connection %s: outgoing queue full (%d bytes), dropped a frame "
                "(overflow policy 'drop'; total in metrics.frames_dropped)",
                self._id,
                pending,
            )
            return
        self._metrics.slow_consumer_closes += 1
        log.warning(
            "closing connection %s: outgoing queue full (%d bytes buffered)", self._id, pending
        )
        self.close(CloseCode.SLOW_CONSUMER, "outgoing queue full")


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
        target = request.path  # the request target: path plus optional ?query
        path, _, query = target.partition("?")
        if not _is_upgrade(request.headers):
            answer = await self._pond.http_request(
                request.method,
                path,
                lambda: ConnectionRequest.from_raw(
                    path, query, request.headers.raw_items(), _client_address(connection)
                ),
            )
            if answer is not None:
                return _response(answer.status, answer.content_type, answer.body, answer.headers)
            page = self._http_routes.get(path)
            if page is not None:
                return _response(200, page[0], page[1])
            if self._pond.match(target) is None:
                return _text_response(404, "Not Found")
            return None  # an endpoint without Upgrade: websockets answers 426
        found = self._pond.match(target)  # the pattern splits the query off itself
        if found is None:
            return _text_response(404, "Not Found")
        endpoint, route = found
        if "Sec-WebSocket-Key" not in request.headers:
            # websockets would refuse it after the app's handler ran: refuse it before
            return _text_response(400, "Missing Sec-WebSocket-Key header")
        conn_request = ConnectionRequest.from_raw(
            path, query, request.headers.raw_items(), _client_address(connection)
        )
        ctx = await endpoint.handshake(conn_request, route)
        if not ctx.accepted:
            return _text_response(ctx.decline_status, ctx.decline_message)
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
            frame = encode_frame(
                ServerAction.SYSTEM, EVENT_HEARTBEAT, ENDPOINT_CHANNEL, new_request_id(), {}
            )
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


def _is_upgrade(headers: Headers) -> bool:
    return any(
        token.strip().lower() == "websocket"
        for value in headers.get_all("Upgrade")
        for token in value.split(",")
    )


def _client_address(connection: ServerConnection) -> tuple[str, int] | None:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def _response(
    status: int, content_type: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()
) -> Response:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # a custom decline status such as 499
        phrase = "Error"
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            *extra,
        ]
    )
    return Response(status, phrase, headers, body)


def _text_response(status: int, text: str) -> Response:
    return _response(status, "text/plain; charset=utf-8", text.encode())


async def serve(
    pond: Host,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: asyncio.Future[int] | None = None,
    http_routes: HttpRoutes | None = None,
    handle_sigterm: bool = True,
    **ws_kwargs: Any,
) -> None:
    """Serve ``pond`` until cancelled (or SIGTERM), then shut down gracefully.

    ``ready`` receives the bound port once listening (handy with ``port=0``);
    ``http_routes`` serves fixed pages to plain HTTP GETs; other keyword arguments go to
    ``websockets.asyncio.server.serve`` (e.g. ``compression="deflate"``, ``close_timeout``).

    Run from the main thread of a process whose SIGTERM nobody handles yet, a SIGTERM
    makes this return after the graceful shutdown instead of killing the process like a
    crash (clients would see 1006, peers no leave); ``handle_sigterm=False`` opts out.
    """
    server = StandaloneServer(pond, host, port, http_routes=http_routes, **ws_kwargs)
    try:
        bound = await server.start()
    except BaseException as exc:
        if ready is not None and not ready.done():
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(exc)
        raise
    scheme = "wss" if ws_kwargs.get("ssl") is not None else "ws"
    log.info(
        "PondSocket listening on %s://%s:%d (standalone; %s)", scheme, host, bound, pond.describe()
    )
    if ready is not None and not ready.done():
        ready.set_result(bound)
    stop = asyncio.Event()
    uninstall = _stop_on_sigterm(stop) if handle_sigterm else None
    closed = asyncio.ensure_future(server.wait_closed())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.info("SIGTERM: shutting down gracefully")
    finally:
        closed.cancel()
        stopped.cancel()
        if uninstall is not None:
            uninstall()
        await server.aclose()


def _stop_on_sigterm(stop: asyncio.Event) -> Callable[[], None] | None:
    """Set ``stop`` on SIGTERM if nobody handles that signal yet; returns the remover."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # the app (or pond.run(), or uvicorn) handles it
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError):  # e.g. Windows
        return None

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGTERM)

    return uninstall


def run(
    pond: Host,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    tune_gc: bool = True,
    on_ready: Callable[[int], object] | None = None,
    **kwargs: Any,
) -> None:
    """Blocking: serve ``pond`` until SIGINT/SIGTERM, then shut down gracefully.

    Uses uvloop when it is installed (about 10-25% faster here), else asyncio's loop.
    The process's garbage collector is tuned for a server (:func:`pondsocket.tune_gc`)
    unless ``tune_gc`` is false. ``on_ready(port)`` is called with the bound port once
    the server listens (not at all when binding fails).
    """
    if tune_gc:
        tune_process_gc()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()

        def listening(done: asyncio.Future[int]) -> None:
            # exception() also marks a failed bind's error as seen: server_task raises it
            if not done.cancelled() and done.exception() is None and on_ready is not None:
                on_ready(done.result())

        ready.add_done_callback(listening)
        stop = asyncio.Event()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        server_task = asyncio.create_task(serve(pond, host, port, ready=ready, **kwargs))
        stop_task = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
            server_task.cancel()  # serve() shuts down gracefully when cancelled
            await asyncio.wait({server_task, stop_task})
            for sig in installed:
                loop.remove_signal_handler(sig)
        error = None if server_task.cancelled() else server_task.exception()
        if error is not None:
            raise error  # e.g. the port was already in use

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
