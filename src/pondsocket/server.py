"""``PondSocket``: the server object applications build and transports serve."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, overload

import orjson

from pondsocket.admin import AdminSite
from pondsocket.cluster.node import ClusterNode
from pondsocket.cluster.options import ClusterOptions
from pondsocket.core.endpoint import ConnectionHandler, Endpoint
from pondsocket.core.invoke import Middleware
from pondsocket.core.limits import ConnectionLimits
from pondsocket.core.metrics import Metrics
from pondsocket.core.options import PondOptions
from pondsocket.core.outlet import CloseCode
from pondsocket.core.request import ConnectionRequest
from pondsocket.core.tasks import TaskSet
from pondsocket.errors import StartupError, UsageError
from pondsocket.history.service import HistoryService
from pondsocket.history.store import HistoryStore, HistoryUnavailableError
from pondsocket.observability.families import snapshot
from pondsocket.observability.http import MetricsListener, metrics_response
from pondsocket.pubsub.base import PubSub, PubSubError
from pondsocket.pubsub.failures import explain
from pondsocket.pubsub.memory import InMemoryPubSub
from pondsocket.routing import Route
from pondsocket.transports import standalone
from pondsocket.transports.asgi import ASGIApp
from pondsocket.transports.host import HttpResponse

log = logging.getLogger("pondsocket")

Hook = Callable[[], Awaitable[None]]


class PondSocket:
    """A PondSocket server: endpoints, their channels, and the pubsub that links nodes.

    >>> pond = PondSocket()
    >>> endpoint = pond.create_endpoint("/api/socket", lambda ctx: ctx.accept())
    """

    def __init__(
        self,
        options: PondOptions | None = None,
        pubsub: PubSub | None = None,
        *,
        node_id: str | None = None,
        cluster: ClusterOptions | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        self.options = options or PondOptions()
        """The server's options (change them with :meth:`configure`)."""
        self._owns_pubsub = pubsub is None
        alone: Callable[[], bool] | None = None
        if pubsub is None:  # a private bus: a single node until another pubsub attaches
            own = InMemoryPubSub()
            pubsub, alone = own, own.alone
        self.pubsub: PubSub = pubsub
        """The bus to the other nodes (a private :class:`InMemoryPubSub` by default)."""
        self.metrics = Metrics()
        """The server's counters."""
        self.limits = ConnectionLimits(
            self.options.max_connections, self.options.max_connections_per_address
        )
        """The connection counts and the bounds they are held to, shared by the endpoints."""
        self._tasks = TaskSet(lambda what, exc: self.metrics.recent_errors.record(what, "", exc))
        self.cluster = ClusterNode(
            self.pubsub, self._tasks.spawn, node_id=node_id, options=cluster, alone=alone
        )
        """This node of the cluster (``cluster.stats``: its counters)."""
        self._history_store = history
        self.history = HistoryService(
            lambda: self.cluster,
            lambda channel: self.cluster.topic_of(channel),
            self._tasks.spawn,
            lambda: (
                self._history_store
                if self._history_store is not None
                else self.pubsub.history_store()
            ),
        )
        """Records, orders and replays the broadcasts of channels with history."""
        self.cluster.channel_resynced = self.history.resynced
        self._endpoints: list[Endpoint] = []
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []
        self._started = False
        self._asgi: ASGIApp | None = None
        self._shutting_down: asyncio.Future[None] | None = None
        self._stopping = False
        self._draining: asyncio.Future[None] | None = None
        self.metrics_listener: MetricsListener | None = None
        """The separate metrics port (``PondOptions.metrics_port``) once started."""
        self._admin = AdminSite(self)

    @overload
    def create_endpoint(
        self, path: str, handler: None = None, *middleware: Middleware
    ) -> Callable[[ConnectionHandler], Endpoint]: ...
    @overload
    def create_endpoint(
        self, path: str, handler: ConnectionHandler, *middleware: Middleware
    ) -> Endpoint: ...
    def create_endpoint(
        self, path: str, handler: ConnectionHandler | None = None, *middleware: Middleware
    ) -> Endpoint | Callable[[ConnectionHandler], Endpoint]:
        """Declare an endpoint at ``path`` whose ``handler(ConnectionContext)`` accepts or
        declines each connection. Without a handler, works as a decorator returning the
        :class:`Endpoint`."""
        if any(e.path == path for e in self._endpoints):
            raise UsageError(f"endpoint {path!r} is already registered")

        def add(fn: ConnectionHandler) -> Endpoint:
            endpoint = Endpoint(
                path,
                fn,
                middleware,
                self.options,
                self.metrics,
                self._tasks,
                self.cluster,
                self.limits,
            )
            endpoint.recorder = self.history
            self._endpoints.append(endpoint)
            return endpoint

        return add(handler) if handler is not None else add

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``await hook()`` when serving starts (e.g. connect a broker); a decorator."""
        self._startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``await hook()`` at the end of :meth:`shutdown` (e.g. close a broker)."""
        self._shutdown_hooks.append(hook)
        return hook

    async def startup(self) -> None:
        """Run the startup hooks once, then start the cluster node. Transports call it."""
        if self._started:
            return
        self._started = True
        options = self.options
        if options.metrics_port is not None:
            listener = MetricsListener(
                self, options.metrics_host, options.metrics_port, options.metrics_path or "/metrics"
            )
            await listener.start()
            self.metrics_listener = listener
        try:
            for hook in self._startup_hooks:
                await hook()
            await self._start_history()
        except (PubSubError, HistoryUnavailableError) as exc:
            raise StartupError(explain(exc)) from exc
        self.cluster.start()

    async def _start_history(self) -> None:
        store = self._history_store
        if store is None:
            store = self.pubsub.history_store()
        lobbies = [
            lobby
            for endpoint in self._endpoints
            for lobby in endpoint.lobbies
            if lobby.history_config is not None
        ]
        if store is None:
            for lobby in [lobby for lobby in lobbies if not lobby.history_required]:
                log.info(
                    "channels %s run without history: %s has no history store",
                    lobby.pattern.pattern,
                    type(self.pubsub).__name__,
                )
                lobby.history_config = None
                lobbies.remove(lobby)
        patterns = [lobby.pattern.pattern for lobby in lobbies]
        if store is None and patterns:
            raise UsageError(
                f"channels {', '.join(patterns)} keep history, but {type(self.pubsub).__name__}"
                " has no history store: pass PondSocket(history=...), e.g."
                " RedisHistory.from_url('redis://...') (docs/recovery.md)"
            )
        if store is not None and patterns:
            try:  # fail at startup, not at the first broadcast, if the store cannot work
                await store.read("pondsocket:probe", 0, 0, ttl=1.0, meta_ttl=60.0)
            except HistoryUnavailableError as exc:
                raise HistoryUnavailableError(
                    f"channels {', '.join(patterns)} keep history, but the history store"
                    f" {type(store).__name__} does not answer: {exc}"
                ) from exc
        self.history.store = store
        self.cluster.channel_resynced = self.history.resynced

    def use_pubsub(self, pubsub: PubSub, cluster: ClusterOptions | None = None) -> None:
        """Join a cluster through ``pubsub`` (it stays the caller's to close). Only before
        the node took part in any traffic, e.g. from a startup hook."""
        if self.cluster.started:
            raise UsageError("use_pubsub() must be called before the server starts serving")
        self._owns_pubsub = False
        self.pubsub = pubsub
        self.cluster = ClusterNode(
            pubsub,
            self._tasks.spawn,
            node_id=self.cluster.node_id,
            options=cluster or self.cluster.options,
        )
        self.cluster.channel_resynced = self.history.resynced
        for endpoint in self._endpoints:
            endpoint.relay = self.cluster

    def configure(self, **changes: Any) -> PondOptions:
        """Replace some options (``pond.configure(max_message_size=65536)``) before serving;
        connections already open keep the limits they started with."""
        self.options = dataclasses.replace(self.options, **changes)
        self.limits.configure(
            self.options.max_connections, self.options.max_connections_per_address
        )
        for endpoint in self._endpoints:
            endpoint.options = self.options
        return self.options

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints declared with :meth:`create_endpoint`, in that order."""
        return list(self._endpoints)

    def match(self, path: str) -> tuple[Endpoint, Route] | None:
        """The first endpoint (in registration order) whose pattern matches ``path``."""
        for endpoint in self._endpoints:
            route = endpoint.pattern.match(path)
            if route is not None:
                return endpoint, route
        return None

    @property
    def asgi(self) -> ASGIApp:
        """This server as an ASGI application (mount it in Starlette/FastAPI, run by uvicorn)."""
        if self._asgi is None:
            self._asgi = ASGIApp(self)
        return self._asgi

    async def serve(self, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        """Run the standalone WebSocket server until cancelled."""
        await standalone.serve(self, host, port, **kwargs)

    def run(self, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        """Blocking: run :meth:`serve` in a fresh event loop (uvloop when installed).

        Tunes the process's garbage collector for a server (:func:`pondsocket.tune_gc`);
        ``tune_gc=False`` keeps CPython's defaults. When the broker or history store fails
        at startup (:class:`~pondsocket.errors.StartupError`) it logs one line with the
        cause and exits the process with status 1, as ``uvicorn.run`` does; call
        :meth:`serve` to handle that yourself.

        When the process has not configured logging by then (no handler on the root
        logger), PondSocket's own INFO lines go to stderr, so the listening line shows."""
        if not logging.getLogger().handlers and not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            log.addHandler(handler)
            if log.level == logging.NOTSET:
                log.setLevel(logging.INFO)
        try:
            standalone.run(self, host, port, **kwargs)
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            raise SystemExit(1) from None

    def describe(self) -> str:
        """One line for the logs: the bus and this node's id."""
        return f"pubsub: {type(self.pubsub).__name__}; node {self.cluster.node_id}"

    def health(self, path: str) -> tuple[int, bytes] | None:
        """The answer to a plain HTTP ``GET path`` if it is a health check
        (``PondOptions.health_path``: alive; ``ready_path``: ready to take connections),
        else ``None``. Ready means started, not shutting down, and (in a cluster) the
        broker connected and the node subscribed; otherwise 503 with the reason."""
        options = self.options
        if options.health_path is not None and path == options.health_path:
            return 200, b'{"status":"ok"}'
        if options.ready_path is None or path != options.ready_path:
            return None
        reason = self.not_ready()
        if reason is None:
            return 200, b'{"status":"ready"}'
        return 503, orjson.dumps({"status": "not ready", "reason": reason})

    def http_get(self, path: str) -> tuple[int, str, bytes] | None:
        """``(status, content type, body)`` for a plain HTTP ``GET path`` the server
        answers itself (health checks, and the metrics at ``PondOptions.metrics_path``
        unless they have a port of their own), else ``None``."""
        health = self.health(path)
        if health is not None:
            return health[0], "application/json", health[1]
        options = self.options
        if options.metrics_port is None and path == options.metrics_path:
            return metrics_response(self)
        return None

    async def http_request(
        self, method: str, path: str, request: Callable[[], ConnectionRequest]
    ) -> HttpResponse | None:
        """The answer to a plain HTTP request (no upgrade) that the server gives itself,
        else ``None``: :meth:`http_get` for ``GET`` s, and the admin page and its API under
        ``PondOptions.admin_path`` (docs/admin.md). Both transports call it; ``request()``
        builds the headers and client only for a path that needs them."""
        if method == "GET":
            answer = self.http_get(path)
            if answer is not None:
                return HttpResponse(*answer)
        return await self._admin.answer(method, path, request)

    def metrics_snapshot(self) -> dict[str, float]:
        """Every metric of docs/metrics.md as plain values, ``{'name{label="v"}': value}``
        (no ``prometheus_client`` needed)."""
        return snapshot(self)

    def not_ready(self) -> str | None:
        """Why this server is not ready for new connections (``None``: it is)."""
        if self._draining is not None and not self._draining.done():
            return "draining"
        if self._shutting_down is not None or self._stopping:
            return "shutting down"
        if not self._started:
            return "starting"
        return self.cluster.not_ready()

    async def drain(self) -> None:
        """The first step of a shutdown: for ``PondOptions.drain_grace`` seconds report
        not ready (``/readyz`` 503 ``"draining"``) while every connection keeps working,
        so load balancers move new clients elsewhere first. Once: later calls wait for
        the first to end. Transports call it before they close anything."""
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_for(self.options.drain_grace))
        await asyncio.shield(self._draining)

    async def _drain_for(self, seconds: float) -> None:
        if seconds > 0 and self._started:
            log.info("draining for %.1f s before closing %d connections", seconds,
                     sum(len(e.connections()) for e in self._endpoints))  # fmt: skip
            await asyncio.sleep(seconds)

    def begin_shutdown(self) -> None:
        """The first step of :meth:`shutdown`, for a transport that closes its sockets
        itself before calling it: report not ready, and stop holding client input back
        for the cluster outbox (a session waiting for room there would keep its
        connection open for as long as a broker that is gone stays gone). Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self.cluster.stop_backpressure()
        self.history.stop_backpressure()

    async def shutdown(self, timeout: float = 5.0, *, drain: bool = True) -> None:
        """Drain (:meth:`drain`, unless ``drain`` is false), close every connection
        (1001), wait up to ``timeout`` s for leave handlers, flush cluster traffic.
        Once: a second call (a host's lifespan after the server's own) waits for the
        first to end."""
        if self._shutting_down is not None:
            await asyncio.shield(self._shutting_down)
            return
        self._shutting_down = asyncio.get_running_loop().create_future()
        try:
            if drain:
                await self.drain()
            await self._shutdown(timeout)
        finally:
            self._shutting_down.set_result(None)

    async def _shutdown(self, timeout: float) -> None:
        self.begin_shutdown()
        for endpoint in self._endpoints:
            endpoint.close_all(CloseCode.GOING_AWAY, "server shutting down")
        try:
            # Leave handlers start only once each transport has seen its socket close.
            async with asyncio.timeout(timeout):
                for endpoint in self._endpoints:
                    await endpoint.wait_idle()
        except TimeoutError:
            log.warning("shutdown: connections still open after %.1f s", timeout)
        await self._tasks.drain(timeout)
        await self.history.aclose()
        await self.cluster.aclose(timeout)
        if self._owns_pubsub:  # a pubsub passed in belongs to the caller
            await self.pubsub.close()
        if self.metrics_listener is not None:
            await self.metrics_listener.aclose()
        for hook in self._shutdown_hooks:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)
