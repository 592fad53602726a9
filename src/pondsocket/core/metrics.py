"""Counters a server keeps; read them from ``pond.metrics`` (cheap: plain ints), and a
fixed-bucket :class:`Histogram` cheap enough for a path that is not the fan-out. The
Prometheus view of all of it is :mod:`pondsocket.observability` (docs/metrics.md)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from pondsocket.core.recent import RecentErrors

# Seconds: from a fast in-process call (50 µs) to a stuck one (10 s).
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their number and sum."""

    __slots__ = ("_counts", "bounds", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations were made."""
        return sum(self._counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` for every bound, then ``+Inf``."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self._counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(slots=True)
class Metrics:
    """A server's counters (``pond.metrics``): plain ints, since it started. Every one, as
    Prometheus exports it, is listed in docs/metrics.md."""

    connections_accepted: int = 0
    """Handshakes accepted (WebSocket and SSE)."""
    connections_declined: int = 0
    """Handshakes refused, for any reason (the connection handler, or the origin)."""
    origin_refused: int = 0
    """Handshakes refused because their ``Origin`` is not allowed (HTTP 403)."""
    connections_limited: int = 0
    """Handshakes refused by ``max_connections`` (503) or ``max_connections_per_address``
    (429)."""
    connections_open: int = 0
    """Client connections open now."""
    messages_received: int = 0
    """Client messages received, of every kind (refused ones included)."""
    received_joins: int = 0
    """``JOIN_CHANNEL`` messages received."""
    received_leaves: int = 0
    """``LEAVE_CHANNEL`` messages received."""
    received_broadcasts: int = 0
    """``BROADCAST`` (event) messages received."""
    received_pings: int = 0
    """The JS client's application-level pings (not answered)."""
    received_binary: int = 0
    """Binary frames received (refused: the protocol is JSON text)."""
    protocol_errors: int = 0
    """Inbound messages answered with an error frame (malformed, oversized, unknown...)."""
    messages_too_large: int = 0
    """Inbound messages above ``max_message_size`` (413 error frame)."""
    rate_limited: int = 0
    """Client messages refused by ``rate_limit`` (429 error frame)."""
    joins_limited: int = 0
    """Joins refused by ``max_channels_per_connection`` or ``join_rate_limit``."""
    joins_declined: int = 0
    """Joins the app's join handler declined (or left undecided)."""
    fanout_broadcast_frames: int = 0
    """Broadcast frames handed to members' outlets (one per recipient)."""
    fanout_broadcast_bytes: int = 0
    """Bytes of the broadcast frames counted in ``fanout_broadcast_frames``."""
    fanout_presence_frames: int = 0
    """Presence frames handed to tracked members' outlets (one per recipient)."""
    fanout_presence_bytes: int = 0
    """Bytes of the presence frames counted in ``fanout_presence_frames``."""
    frames_dropped: int = 0
    """Frames dropped for a full outgoing queue (overflow policy ``drop``)."""
    slow_consumer_closes: int = 0
    """Connections closed because their outgoing queue was full (policy ``close``)."""
    flow_waits: int = 0
    """Times a client's next message waited for the queues its broadcasts landed in to
    drain under their soft watermark (flow control, ``outbox_soft_watermark``)."""
    stuck_closes: int = 0
    """Connections whose queue wrote nothing for ``outbox_stuck_timeout`` while senders
    waited for it: closed 4008 (policy ``close``) or no longer waited for (``drop``)."""
    handler_errors: int = 0
    """Connection, join and event handlers that raised (other than :class:`HandlerError`)."""
    handler_latency: Histogram = field(default_factory=Histogram)
    """Seconds each event handler took (client ``BROADCAST`` messages)."""
    recent_errors: RecentErrors = field(default_factory=RecentErrors)
    """The last handler errors and handshake refusals, for the admin page (docs/admin.md)."""

    def snapshot(self) -> dict[str, int]:
        """The counters (every int field) by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.type in ("int", int)}
