"""Server options, validated once when the server is built."""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pondsocket.core.origin import validate_allowed_origins
from pondsocket.core.proxies import DEFAULT_TRUSTED_PROXIES, validate_trusted_proxies
from pondsocket.core.request import ConnectionRequest
from pondsocket.errors import InvalidOptionError, UsageError

AdminCheck = Callable[[ConnectionRequest], bool | Awaitable[bool]]
"""The app's own check of an admin API request (``PondOptions.admin_auth``)."""
# Segments of unreserved URL characters: the page links to its script relative to its
# last segment, so nothing there needs escaping in HTML or in a URL.
_ADMIN_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")
_MIN_TOKEN = 16


class OverflowPolicy(enum.StrEnum):
    """What happens when a connection's outgoing queue is full (a slow or stuck client)."""

    CLOSE = "close"
    """Close that connection with :attr:`CloseCode.SLOW_CONSUMER` (default): the client
    reconnects and resyncs, and nobody else waits for it."""
    DROP = "drop"
    """Drop the new frame for that connection only, count it and log it; the connection stays."""


@dataclass(frozen=True, slots=True)
class PondOptions:
    """Tunables for a :class:`~pondsocket.PondSocket` server. Every limit is per connection."""

    max_message_size: int = 1024 * 1024
    """Largest inbound message in bytes; larger ones get a 413 error frame (connection stays)."""
    max_frame_size: int | None = None
    """Hard transport limit; frames above it close the connection with 1009.
    Default: 4 x ``max_message_size``."""
    outbox_max_bytes: int = 4 * 1024 * 1024
    """Bound of the outgoing queue of one connection, in bytes of encoded frames."""
    overflow_policy: OverflowPolicy = OverflowPolicy.CLOSE
    outbox_soft_watermark: float | None = 0.25
    """Flow control, as a fraction of ``outbox_max_bytes`` (0.25: 1 MiB of 4 MiB). A client
    whose broadcast lands in a recipient's queue above it has its next message read only
    once every such queue is back under half the mark, so a burst is paced to what its
    readers take instead of overflowing their queues. ``None``: off (queues fill up to
    ``outbox_max_bytes``, then ``overflow_policy`` applies)."""
    outbox_stuck_timeout: float = 5.0
    """Seconds a recipient may hold senders back: one whose queue wrote nothing for this
    long is closed with 4008 (``"outgoing queue stuck"``; policy ``drop``: it is only no
    longer waited for), and one that did write but stayed above the watermark this long
    stops holding senders back until it is under it again."""
    ping_interval: float | None = 20.0
    """Seconds between WebSocket pings; ``None`` disables keep-alive (not recommended)."""
    ping_timeout: float | None = 20.0
    """Seconds to wait for the pong before the peer is declared dead and closed."""
    rate_limit: float | None = 500.0
    """Sustained inbound messages per second per connection; ``None`` disables the limit.
    Messages over the limit are refused with a 429 error frame each (not processed)."""
    rate_burst: int = 1000
    """How many messages a connection may send at once before the rate limit applies."""
    presence_coalesce_window: float = 0.0
    """Seconds over which presence changes of one channel are coalesced (0: off, every
    change is its own frame). When on, the first change goes out at once and a burst of
    later ones (500 users joining a room) sends each tracked client one frame per window,
    carrying the complete list but only the window's *last* change in ``changed``: the
    JS client's list stays exact, but ``onJoin``/``onLeave`` callbacks fire for that last
    change only. Without it a room of N joining users costs O(N²) frames and O(N³) bytes."""
    app_heartbeat_interval: float | None = None
    """Send a ``SYSTEM``/``HEARTBEAT`` frame this often, for JS clients using ``pingInterval``."""
    eviction_notice_event: str = "kicked_out"
    """Event sent to an evicted user (JS server name)."""
    eviction_broadcast_event: str = "kicked"
    """Event sent to the channel when a user is evicted (JS server name)."""
    max_presence_bytes: int | None = 4096
    """Largest presence of one user, as encoded JSON. Every tracked member receives the
    whole list on every change, so one large presence is multiplied by the room size on
    every update; ``track``/``update_presence`` above it raise
    :class:`~pondsocket.PresenceTooLargeError` (a 413 to the client when uncaught in a
    handler), and a peer node's presence above it is ignored. ``None``: no limit."""
    allowed_origins: Sequence[str] | None = None
    """Web origins that may connect (WebSocket and SSE). ``None``: same origin only (the
    ``Origin`` header's host and port must be the request's ``Host``); a list of origins
    (``"https://app.example.com"``, ``"https://*.example.com"`` for subdomains, ``"null"``)
    replaces that rule; ``["*"]`` allows any. Handshakes without ``Origin`` (non-browser
    clients) always pass; a refused one gets HTTP 403 before the upgrade. See
    :mod:`pondsocket.core.origin`."""

    max_channels_per_connection: int | None = 128
    """Channels one connection may be in at once; each costs a broker subscription and a
    member record. A join beyond it is refused (``SYSTEM``/``UNAUTHORIZED``, code
    ``TOO_MANY_CHANNELS``, status 429). ``None``: no limit."""
    join_rate_limit: float | None = 10.0
    """Sustained joins per second per connection, apart from ``rate_limit`` (a join runs
    the app's join handler and subscribes to the broker). Over it: a join refusal with
    code ``RATE_LIMITED``, status 429. ``None``: no limit."""
    join_rate_burst: int = 128
    """Joins a connection may make at once (a reconnecting client rejoining its channels)."""
    max_connections: int | Literal["auto"] | None = "auto"
    """Connections (and handshakes in progress) the whole server accepts at once; beyond
    it a handshake gets HTTP 503. ``"auto"``: 90 % of the process's open-files limit
    (``ulimit -n``), keeping descriptors for the broker and logs. ``None``: no limit."""
    max_connections_per_address: int | None = 1000
    """Connections from one client address at once; beyond it HTTP 429. Behind a reverse
    proxy every client has the proxy's address unless the proxy is listed in
    ``trusted_proxies``. ``None``: no limit."""
    trusted_proxies: Sequence[str] | None = DEFAULT_TRUSTED_PROXIES
    """Addresses or networks (``"10.0.0.0/8"``) of reverse proxies whose ``Forwarded`` /
    ``X-Forwarded-For`` headers say who the client is (``ctx.client``, the per-address
    limit); ``["*"]`` trusts any peer (only if nothing reaches the node but the proxy);
    ``None`` or ``[]``: none. Default: the loopback addresses (a proxy on the same host)."""
    handshake_timeout: float = 10.0
    """Seconds a handshake may take, the connection handler included; then it is refused
    (HTTP 408 under ASGI; the standalone server drops the connection)."""

    health_path: str | None = "/healthz"
    """A plain HTTP ``GET`` here answers 200 while the process serves (a liveness probe);
    ``None`` turns it off. An endpoint at the same path is not reachable by plain GETs."""
    ready_path: str | None = "/readyz"
    """A plain HTTP ``GET`` here answers 200 when the server takes connections (started,
    not shutting down, broker connected and subscribed), else 503 with the reason (a
    readiness probe: a load balancer stops sending clients). ``None`` turns it off."""
    drain_grace: float = 0.0
    """Seconds a shutdown (SIGTERM, ``pond.shutdown()``) spends *draining* before it closes
    any connection: ``ready_path`` answers 503 ``"draining"`` so load balancers stop
    sending new clients, while every connection keeps working (new ones are still
    accepted: a balancer may take a few seconds to notice). Then every socket gets 1001.
    Set it a little above the probe's period times its failure threshold (Kubernetes:
    ``periodSeconds * failureThreshold``); keep the host's own shutdown timeout (e.g.
    ``terminationGracePeriodSeconds``) above it. ``0``: close at once."""
    metrics_path: str | None = None
    """Serve the Prometheus metrics (docs/metrics.md) to plain HTTP ``GET`` requests here,
    e.g. ``"/metrics"``. Off by default: the numbers tell anyone who can reach the port how
    busy the node is and how it fails, so expose them only where the scraper alone reaches
    (``metrics_port`` on an internal interface, or a proxy that blocks the path). Needs the
    ``metrics`` extra (``pip install 'pondsocket-cluster[metrics]'``); without it the path answers
    501. With ``metrics_port`` set, the path is served on that port only (default
    ``"/metrics"``)."""
    metrics_port: int | None = None
    """Serve the metrics on a separate plain-HTTP port (``0``: any free one), bound to
    ``metrics_host``, instead of the clients' port; opened at startup, closed at shutdown."""
    metrics_host: str = "127.0.0.1"
    """Interface of ``metrics_port`` (``"0.0.0.0"`` for a scraper on another host)."""

    admin_path: str | None = None
    """Serve the admin page (docs/admin.md) here, e.g. ``"/admin"``: the cluster's nodes,
    channels, members and presence, connections and their queues, rates, the last errors,
    and buttons to evict a user and close a connection. Off by default; needs
    ``admin_token`` or ``admin_auth``. Its JSON API lives below it (``/admin/api/...``)."""
    admin_token: str | None = field(default=None, repr=False)
    """The secret the admin API requires as ``Authorization: Bearer <token>`` (at least
    16 visible ASCII characters; compared in constant time). Not shown by ``repr``."""
    admin_auth: AdminCheck | None = None
    """The app's own check of an admin API request instead of (or besides) the token:
    ``admin_auth(request)`` gets the :class:`~pondsocket.core.request.ConnectionRequest`
    (headers, cookies, client address) and returns, or awaits, ``True`` to let it in.
    Either credential admits a request."""

    def __post_init__(self) -> None:
        # a tuple, so the options stay hashable and nobody mutates the list afterwards
        object.__setattr__(self, "allowed_origins", validate_allowed_origins(self.allowed_origins))
        object.__setattr__(self, "trusted_proxies", validate_trusted_proxies(self.trusted_proxies))
        for name in ("max_channels_per_connection", "max_connections_per_address"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"{name} must be a positive integer or None")
        if self.max_connections not in ("auto", None) and (
            not isinstance(self.max_connections, int) or self.max_connections < 1
        ):
            raise UsageError('max_connections must be a positive integer, "auto" or None')
        if self.join_rate_limit is not None and (
            self.join_rate_limit <= 0 or self.join_rate_burst < 1
        ):
            raise UsageError("join_rate_limit must be positive and join_rate_burst >= 1")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError("metrics_port must be a TCP port (0-65535) or None")
        for name in ("health_path", "ready_path", "metrics_path"):
            value = getattr(self, name)
            if value is not None and not value.startswith("/"):
                raise UsageError(f"{name} must start with '/' (or be None)")
        _check_admin(self)
        if self.handshake_timeout <= 0:
            raise UsageError("handshake_timeout must be positive")
        if not 0 <= self.drain_grace <= 3600:
            raise UsageError("drain_grace must be between 0 and 3600 seconds")
        if self.max_message_size <= 0:
            raise UsageError("max_message_size must be positive")
        if self.max_frame_size is not None and self.max_frame_size < self.max_message_size:
            raise UsageError("max_frame_size must be >= max_message_size")
        if self.outbox_max_bytes <= 0:
            raise UsageError("outbox_max_bytes must be positive")
        watermark = self.outbox_soft_watermark
        if watermark is not None and not 0 < watermark < 1:
            raise UsageError("outbox_soft_watermark must be between 0 and 1 (exclusive) or None")
        if self.outbox_stuck_timeout <= 0:
            raise UsageError("outbox_stuck_timeout must be positive")
        if self.rate_limit is not None and (self.rate_limit <= 0 or self.rate_burst < 1):
            raise UsageError("rate_limit must be positive and rate_burst >= 1")
        if self.max_presence_bytes is not None and self.max_presence_bytes < 2:
            raise UsageError("max_presence_bytes must be >= 2 (an empty object) or None")
        if self.presence_coalesce_window < 0:
            raise UsageError("presence_coalesce_window must be >= 0")
        for name in ("ping_interval", "ping_timeout", "app_heartbeat_interval"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive or None")

    @property
    def outbox_soft_bytes(self) -> int | None:
        """``outbox_soft_watermark`` in bytes (``None``: no flow control)."""
        if self.outbox_soft_watermark is None:
            return None
        return max(1, int(self.outbox_max_bytes * self.outbox_soft_watermark))

    @property
    def transport_frame_limit(self) -> int:
        return self.max_frame_size or 4 * self.max_message_size


def _check_admin(options: PondOptions) -> None:
    token, path = options.admin_token, options.admin_path
    if token is not None and (
        not isinstance(token, str)
        or len(token) < _MIN_TOKEN
        or not all("!" <= char <= "~" for char in token)
    ):
        raise InvalidOptionError(
            f"admin_token must be at least {_MIN_TOKEN} visible ASCII characters (no spaces),"
            " e.g. secrets.token_urlsafe(32)"
        )
    if options.admin_auth is not None and not callable(options.admin_auth):
        raise InvalidOptionError("admin_auth must be a callable: admin_auth(request) -> bool")
    if path is None:
        return
    if not isinstance(path, str) or _ADMIN_PATH.fullmatch(path) is None:
        raise InvalidOptionError(
            "admin_path must be a path such as '/admin': '/'-separated segments of letters,"
            " digits and '-._~', without a trailing '/'"
        )
    metrics = options.metrics_path if options.metrics_port is None else None
    if path in (options.health_path, options.ready_path, metrics):
        raise InvalidOptionError(
            f"admin_path {path!r} is already the health, ready or metrics path"
        )
    if token is None and options.admin_auth is None:
        raise InvalidOptionError(
            "admin_path is set but neither admin_token nor admin_auth is: the admin API evicts"
            " users and closes connections, so it needs a credential (docs/admin.md)"
        )
