"""Counters a server keeps; read them from ``pond.metrics`` (cheap: plain ints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Metrics:
    connections_accepted: int = 0
    connections_declined: int = 0
    """Handshakes refused, for any reason (the connection handler, or the origin)."""
    origin_refused: int = 0
    """Handshakes refused because their ``Origin`` is not allowed (HTTP 403)."""
    connections_limited: int = 0
    """Handshakes refused by ``max_connections`` (503) or ``max_connections_per_address``
    (429)."""
    connections_open: int = 0
    messages_received: int = 0
    protocol_errors: int = 0
    """Inbound messages answered with an error frame (malformed, oversized, unknown...)."""
    rate_limited: int = 0
    joins_limited: int = 0
    """Joins refused by ``max_channels_per_connection`` or ``join_rate_limit``."""
    frames_dropped: int = 0
    """Frames dropped for a full outgoing queue (overflow policy ``drop``)."""
    slow_consumer_closes: int = 0
    """Connections closed because their outgoing queue was full (policy ``close``)."""
    handler_errors: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
