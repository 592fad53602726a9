"""An endpoint: a URL path where clients connect, its connection handler and its lobbies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from pondsocket.core.channel import Channel
from pondsocket.core.contexts import ConnectionContext, Decision
from pondsocket.core.history import Recorder
from pondsocket.core.invoke import Middleware, run_chain
from pondsocket.core.limits import ConnectionLimits
from pondsocket.core.lobby import JoinHandler, Lobby
from pondsocket.core.metrics import Metrics
from pondsocket.core.options import PondOptions
from pondsocket.core.origin import origin_policy
from pondsocket.core.outlet import CloseCode, Outlet
from pondsocket.core.proxies import client_address
from pondsocket.core.ratelog import FailureLog, RateLimitedLog
from pondsocket.core.relay import Relay
from pondsocket.core.request import ConnectionRequest
from pondsocket.core.session import Session
from pondsocket.core.tasks import TaskSet
from pondsocket.core.user import Connection
from pondsocket.core.values import check_object
from pondsocket.errors import HandlerError, UsageError
from pondsocket.routing import Route, compile_pattern
from pondsocket.wire.codec import encode_frame, new_request_id
from pondsocket.wire.ids import random_uuid
from pondsocket.wire.messages import ENDPOINT_CHANNEL, EVENT_CONNECTION, ServerAction

if TYPE_CHECKING:
    from collections.abc import Coroutine


log = logging.getLogger("pondsocket.endpoint")

ConnectionHandler = Callable[[ConnectionContext], Any]
UNDECIDED_CONNECTION = "Connection handler completed without accepting or declining the request"


class Endpoint:
    """A path clients connect to, made by :meth:`PondSocket.create_endpoint`: its connection
    handler accepts or declines each connection, and its channels are declared with
    :meth:`create_channel`."""

    def __init__(
        self,
        path: str,
        handler: ConnectionHandler,
        middleware: tuple[Middleware, ...],
        options: PondOptions,
        metrics: Metrics,
        tasks: TaskSet,
        relay: Relay,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.pattern = compile_pattern(path)
        self.path = path
        self._handler = handler
        self._middleware = middleware
        self.options = options
        self.metrics = metrics
        self._origin_refusals = RateLimitedLog(log)  # hostile pages may retry for ever
        self._slow_handshakes = RateLimitedLog(log)
        self._handler_failures = FailureLog(log)
        self._tasks = tasks
        self.relay = relay
        self.recorder: Recorder | None = None
        self.limits = limits or ConnectionLimits(
            options.max_connections, options.max_connections_per_address
        )
        self._lobbies: list[Lobby] = []
        self._channels: dict[str, Channel] = {}
        self._connections: dict[str, Connection] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"<Endpoint {self.path!r} connections={len(self._connections)}>"

    # -- declaring channels --------------------------------------------------

    @overload
    def create_channel(
        self, pattern: str, handler: None = None, *middleware: Middleware
    ) -> Callable[[JoinHandler], Lobby]: ...
    @overload
    def create_channel(
        self, pattern: str, handler: JoinHandler, *middleware: Middleware
    ) -> Lobby: ...
    def create_channel(
        self, pattern: str, handler: JoinHandler | None = None, *middleware: Middleware
    ) -> Lobby | Callable[[JoinHandler], Lobby]:
        """Declare channels matching ``pattern`` (``/chat/:room``) with their join handler.

        Returns the :class:`Lobby`; without a handler, works as a decorator that returns it.
        """
        if any(lobby.pattern.pattern == pattern for lobby in self._lobbies):
            raise UsageError(f"channel pattern {pattern!r} is already registered on {self.path!r}")

        def add(fn: JoinHandler) -> Lobby:
            lobby = Lobby(pattern, fn, middleware)
            self._lobbies.append(lobby)
            return lobby

        if handler is not None:
            return add(handler)
        compile_pattern(pattern)  # fail at the decorator line, not later
        return add

    @property
    def lobbies(self) -> list[Lobby]:
        """The channel patterns declared with :meth:`create_channel`, in that order."""
        return list(self._lobbies)

    def find_lobby(self, channel_name: str) -> tuple[Lobby, Route] | None:
        for lobby in self._lobbies:
            route = lobby.pattern.match(channel_name)
            if route is not None:
                return lobby, route
        return None

    # -- connections (called by transports) ----------------------------------

    async def handshake(self, request: ConnectionRequest, route: Route) -> ConnectionContext:
        """Run the connection handler; the returned context holds the decision."""
        trusted = tuple(self.options.trusted_proxies or ())
        client = client_address(request.client, request.headers, trusted)
        if client != request.client:
            request = dataclasses.replace(request, client=client)
        ctx = ConnectionContext(request, route, random_uuid())
        origin = request.headers.get("origin")
        if not origin_policy(self.options.allowed_origins).allows(
            origin, request.headers.get("host")
        ):
            # Before the app's handler: a page on another site must not even reach it.
            ctx.decline(403, "Origin not allowed")
            self.metrics.origin_refused += 1
            self.metrics.connections_declined += 1
            self.metrics.recent_errors.record("origin refused", self.path, repr(origin))
            self._origin_refusals.warning(
                "refused a handshake to %s from origin %r (HTTP 403): not allowed by "
                "PondOptions.allowed_origins (default: same origin only)",
                self.path,
                origin,
            )
            return ctx
        address = None if client is None else client[0]
        refusal = self.limits.refusal(address)
        if refusal is not None:
            ctx.decline(*refusal)
            self.metrics.connections_limited += 1
            self.metrics.recent_errors.record("connection limit", self.path, refusal[1])
            self.metrics.connections_declined += 1
            return ctx
        self.limits.add(address)  # a handshake in progress holds a place too
        try:
            async with asyncio.timeout(self.options.handshake_timeout):
                await self._decide(ctx)
        except TimeoutError:
            if ctx.decision is Decision.PENDING:
                ctx.decline(408, "Handshake timed out")
            self.metrics.recent_errors.record("handshake timeout", self.path, "HTTP 408")
            self._slow_handshakes.warning(
                "the connection handler of %s took more than handshake_timeout (%.1f s):"
                " cancelled, the handshake refused (HTTP 408)",
                self.path,
                self.options.handshake_timeout,
            )
        finally:
            self.limits.remove(address)
        if ctx.accepted:
            self.metrics.connections_accepted += 1
        else:
            self.metrics.connections_declined += 1
        return ctx

    async def _decide(self, ctx: ConnectionContext) -> None:
        try:
            await run_chain(ctx, self._middleware, self._handler)
        except HandlerError as exc:
            if ctx.decision is Decision.PENDING:
                ctx.decline(exc.status if 400 <= exc.status <= 599 else 500, exc.message)
        except Exception as exc:
            self._handler_failures.error(self, exc, "connection handler of %s failed", self.path)
            self.metrics.handler_errors += 1
            self.metrics.recent_errors.record("connection handler", self.path, exc)
            if ctx.decision is Decision.PENDING:
                ctx.decline(500, "Internal Server Error")
        if ctx.decision is Decision.PENDING:
            ctx.decline(500, UNDECIDED_CONNECTION)

    def open(
        self, ctx: ConnectionContext, outlet: Outlet, *, client_id: str | None = None
    ) -> Session:
        """Register an accepted connection and send its CONNECTION frame (first, always).

        ``client_id`` is what the frame tells the client its connection id is, when that
        must differ from the user id other members may learn (SSE: the secret that
        authorises the stream's POSTs)."""
        if not ctx.accepted:
            raise UsageError("open() needs an accepted handshake")
        connection = Connection(ctx.connection_id, outlet, dict(ctx.assigns), self.path)
        connection.address = None if ctx.client is None else ctx.client[0]
        self.limits.add(connection.address)
        self._connections[connection.id] = connection
        self._idle.clear()
        self.metrics.connections_open += 1
        outlet.send(
            encode_frame(
                ServerAction.CONNECT,
                EVENT_CONNECTION,
                ENDPOINT_CHANNEL,
                new_request_id(),
                {"connectionId": client_id or connection.id},
            )
        )
        for event, payload in ctx.replies:
            outlet.send(
                encode_frame(
                    ServerAction.BROADCAST, event, ENDPOINT_CHANNEL, new_request_id(), payload
                )
            )
        return Session(self, connection)

    def forget(self, connection: Connection) -> None:
        if self._connections.pop(connection.id, None) is not None:
            self.metrics.connections_open -= 1
            self.limits.remove(connection.address)
        if not self._connections:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until every connection of this endpoint has ended."""
        if self._connections:
            await self._idle.wait()

    # -- channel registry (ChannelHost) --------------------------------------

    def get_or_create_channel(self, name: str, lobby: Lobby) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(name, lobby, self)
            self.relay.channel_opened(channel)
        return channel

    def drop_channel(self, channel: Channel) -> None:
        if self._channels.get(channel.name) is channel:
            del self._channels[channel.name]
            self.relay.channel_closed(channel)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        self._tasks.spawn(coro, what)

    # -- server-side API -----------------------------------------------------

    @property
    def channel_names(self) -> list[str]:
        """Names of the channels open on this node."""
        return list(self._channels)

    def get_channel(self, name: str) -> Channel | None:
        """The channel of that name open on this node, or ``None``."""
        return self._channels.get(name)

    @property
    def connection_ids(self) -> list[str]:
        """Ids of the connections open on this node."""
        return list(self._connections)

    def outlets(self) -> list[Outlet]:
        """The outlets of the open connections (the metrics sample their queues)."""
        return [connection.outlet for connection in self._connections.values()]

    def connections(self) -> list[Connection]:
        """The open connections of this node (the admin page lists them)."""
        return list(self._connections.values())

    def get_connection_assigns(self, connection_id: str) -> dict[str, Any] | None:
        """A copy of a connection's connection-level assigns, or ``None`` if it is not
        open on this node."""
        connection = self._connections.get(connection_id)
        return None if connection is None else dict(connection.assigns)

    def broadcast(self, channel_name: str, event: str, payload: dict[str, Any]) -> None:
        """Broadcast into a channel by name, to its members on every node (it need not have
        members here)."""
        channel = self._channels.get(channel_name)
        if channel is None and self.recorder is not None:
            found = self.find_lobby(channel_name)
            if found is not None and found[0].history_config is not None:
                # Recorded like any broadcast of the channel, through a closed stand-in (no
                # members here, nothing to subscribe): the store numbers it, peers deliver.
                channel = Channel(channel_name, found[0], self)
                channel.closed = True
        if channel is not None:
            channel.broadcast(event, payload)
        else:
            self.relay.broadcast_elsewhere(
                self.path, channel_name, event, check_object(payload, "payload")
            )

    def close_connection(
        self, connection_id: str, code: int = CloseCode.CLOSED_BY_SERVER, reason: str = ""
    ) -> bool:
        """Close a client connection; its channels see it leave (``connection_closed``)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.outlet.close(code, reason)
        return True

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection of this endpoint on this node with ``code`` and ``reason``."""
        for connection in list(self._connections.values()):
            connection.outlet.close(code, reason)
