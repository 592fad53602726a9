"""Every metric of a server, read from its plain counters at the moment of a scrape.

Nothing here runs per message: the hot path only bumps plain ints (``pond.metrics``,
``pond.cluster.stats``, the backend's ``pubsub.stats``, ``pond.history.stats``) and a few
cheap fixed-bucket histograms (:mod:`pondsocket.observability.histogram`); this module turns
them into metric families when ``/metrics`` is scraped or :func:`snapshot` is called. It
does not import ``prometheus_client`` (see :mod:`pondsocket.observability.prometheus`).

Labels only take values from small fixed sets (a reason, a kind, a policy, a backend's
name): never a channel name, a user id or a node id. docs/metrics.md lists every family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pondsocket.core.metrics import Histogram

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

Kind = Literal["counter", "gauge", "histogram", "gaugehistogram"]

# Bounds of the outgoing-queue histogram, sampled over the open connections at scrape time.
OUTBOX_BYTES_BUCKETS = (0.0, 1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0)


@dataclass(slots=True)
class Family:
    """One metric family: its samples as ``(label values, value)`` pairs, or for a
    histogram ``(label values, Histogram)``."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    histograms: list[tuple[tuple[str, ...], Histogram]] = field(default_factory=list)

    def add(self, value: float, *label_values: str) -> Family:
        self.samples.append((label_values, float(value)))
        return self


def _one(name: str, kind: Kind, help: str, value: float) -> Family:
    return Family(name, kind, help).add(value)


def families(pond: PondSocket) -> list[Family]:
    """Every family of ``pond``, in the order docs/metrics.md lists them."""
    return [*_server(pond), *_cluster(pond), *_pubsub(pond), *_history(pond)]


def _server(pond: PondSocket) -> Iterable[Family]:
    m = pond.metrics
    endpoints = pond.endpoints
    channels = [c for e in endpoints for name in e.channel_names if (c := e.get_channel(name))]
    local = sum(len(c.user_ids) for c in channels)
    everywhere = sum(len(c.all_user_ids) for c in channels)
    yield _one(
        "pondsocket_ready",
        "gauge",
        "1 while the server takes new connections (as the readiness probe).",
        float(pond.not_ready() is None),
    )
    yield _one("pondsocket_connections", "gauge", "Open client connections.", m.connections_open)
    yield _one(
        "pondsocket_connections_accepted_total",
        "counter",
        "Handshakes accepted (WebSocket and SSE).",
        m.connections_accepted,
    )
    declined_by_app = m.connections_declined - m.origin_refused - m.connections_limited
    yield (
        Family(
            "pondsocket_refusals_total",
            "counter",
            "Handshakes, messages and joins refused, by reason.",
            ("reason",),
        )
        .add(m.origin_refused, "origin")
        .add(m.connections_limited, "connection_limit")
        .add(max(0, declined_by_app), "auth")
        .add(m.rate_limited, "rate_limit")
        .add(m.joins_limited, "join_limit")
        .add(m.messages_too_large, "too_large")
        .add(m.joins_declined, "join_declined")
    )
    yield _one("pondsocket_channels", "gauge", "Channels open on this node.", len(channels))
    yield (
        Family(
            "pondsocket_channel_members",
            "gauge",
            "Channel memberships: of this node's connections (local) or other nodes' (remote).",
            ("scope",),
        )
        .add(local, "local")
        .add(everywhere - local, "remote")
    )
    yield _one(
        "pondsocket_presence_entries",
        "gauge",
        "Tracked presences in this node's channels (local and remote users).",
        sum(len(c.get_presence()) for c in channels),
    )
    kinds = {
        "join": m.received_joins,
        "leave": m.received_leaves,
        "broadcast": m.received_broadcasts,
        "ping": m.received_pings,
        "binary": m.received_binary,
    }
    received = Family(
        "pondsocket_messages_received_total",
        "counter",
        "Client messages received, by kind: join, leave, broadcast, ping, binary, or"
        " refused (too large, rate limited or not decodable: answered with an error).",
        ("kind",),
    )
    for kind, count in kinds.items():
        received.add(count, kind)
    yield received.add(max(0, m.messages_received - sum(kinds.values())), "refused")
    yield _one(
        "pondsocket_protocol_errors_total",
        "counter",
        "Client messages answered with an error frame (malformed, oversized, rate limited...).",
        m.protocol_errors,
    )
    yield (
        Family(
            "pondsocket_fanout_frames_total",
            "counter",
            "Frames a channel fanned out to its members' outgoing queues (one per recipient),"
            " by kind: broadcast or presence.",
            ("kind",),
        )
        .add(m.fanout_broadcast_frames, "broadcast")
        .add(m.fanout_presence_frames, "presence")
    )
    yield (
        Family(
            "pondsocket_fanout_bytes_total",
            "counter",
            "Bytes of the frames in pondsocket_fanout_frames_total (encoded JSON, before"
            " WebSocket framing), by kind.",
            ("kind",),
        )
        .add(m.fanout_broadcast_bytes, "broadcast")
        .add(m.fanout_presence_bytes, "presence")
    )
    yield (
        Family(
            "pondsocket_outbox_overflows_total",
            "counter",
            "Full outgoing queues, by overflow policy: drop (frame dropped) or close (4008).",
            ("policy",),
        )
        .add(m.frames_dropped, "drop")
        .add(m.slow_consumer_closes, "close")
    )
    yield _one(
        "pondsocket_flow_waits_total",
        "counter",
        "Client messages after which reading that client waited for the queues its"
        " broadcasts landed in to drain (flow control, outbox_soft_watermark).",
        m.flow_waits,
    )
    yield _one(
        "pondsocket_stuck_closes_total",
        "counter",
        "Connections whose outgoing queue wrote nothing for outbox_stuck_timeout while"
        " senders waited for it (closed 4008 under policy close).",
        m.stuck_closes,
    )
    depth = Histogram(OUTBOX_BYTES_BUCKETS)
    for endpoint in endpoints:
        for outlet in endpoint.outlets():
            pending = getattr(outlet, "pending_bytes", None)
            if isinstance(pending, int):
                depth.observe(pending)
    yield Family(
        "pondsocket_outbox_bytes",
        "gaugehistogram",
        "Bytes waiting in each open connection's outgoing queue, sampled at scrape time.",
        histograms=[((), depth)],
    )
    yield _one(
        "pondsocket_handler_errors_total",
        "counter",
        "Connection, join and event handlers that raised (other than HandlerError).",
        m.handler_errors,
    )
    yield Family(
        "pondsocket_handler_duration_seconds",
        "histogram",
        "Time the event handlers took (BROADCAST messages from clients).",
        histograms=[((), m.handler_latency)],
    )


def _cluster(pond: PondSocket) -> Iterable[Family]:
    node = pond.cluster
    s = node.stats
    yield _one(
        "pondsocket_cluster_nodes",
        "gauge",
        "Other nodes this node currently knows (heard from, not yet timed out).",
        len(node.registry),
    )
    yield _one(
        "pondsocket_cluster_bus_up",
        "gauge",
        "1 while the broker is connected, 0 during an outage.",
        float(not node.outbox.bus_down),
    )
    yield _one(
        "pondsocket_cluster_outbox_envelopes",
        "gauge",
        "Envelopes waiting in the cluster outbox for the broker.",
        len(node.outbox),
    )
    yield _one(
        "pondsocket_cluster_outbox_capacity",
        "gauge",
        "Size of the cluster outbox (ClusterOptions.outbox_size).",
        node.options.outbox_size,
    )
    yield _one(
        "pondsocket_cluster_envelopes_sent_total",
        "counter",
        "Envelopes the broker accepted from this node.",
        s.published,
    )
    yield _one(
        "pondsocket_cluster_envelopes_received_total",
        "counter",
        "Envelopes received from the broker on this node's topics.",
        s.received,
    )
    yield (
        Family(
            "pondsocket_cluster_envelopes_invalid_total",
            "counter",
            "Envelopes dropped on arrival, by reason (malformed, unsigned, bad_signature).",
            ("reason",),
        )
        .add(s.invalid, "malformed")
        .add(s.unsigned, "unsigned")
        .add(s.bad_signatures, "bad_signature")
    )
    yield (
        Family(
            "pondsocket_cluster_envelopes_dropped_total",
            "counter",
            "Envelopes not sent or not applied, by reason (outbox_full, publish_error,"
            " duplicate, refused).",
            ("reason",),
        )
        .add(s.dropped, "outbox_full")
        .add(s.publish_errors, "publish_error")
        .add(s.duplicates, "duplicate")
        .add(s.refused, "refused")
    )
    yield _one(
        "pondsocket_cluster_gaps_total",
        "counter",
        "Sequence gaps seen in peers' envelopes.",
        s.gaps,
    )
    yield _one(
        "pondsocket_cluster_resyncs_total",
        "counter",
        "Channel resyncs (after a gap, a reconnect or a peer's death).",
        s.resyncs,
    )
    yield _one(
        "pondsocket_cluster_heartbeats_missed_total",
        "counter",
        "Peers declared dead because their heartbeats stopped.",
        s.dead_nodes,
    )
    yield _one(
        "pondsocket_cluster_bus_reconnects_total",
        "counter",
        "Broker outages that ended.",
        s.reconnects,
    )
    yield Family(
        "pondsocket_cluster_publish_duration_seconds",
        "histogram",
        "Time one envelope's publish took (the broker's answer, or the backend's queue).",
        histograms=[((), node.outbox.publish_latency)],
    )


def backend_name(pubsub: object) -> str:
    """The backend's short name (its module: ``redis``, ``nats``, ``memory``...)."""
    return type(pubsub).__module__.rsplit(".", 1)[-1]


def _pubsub(pond: PondSocket) -> Iterable[Family]:
    stats: Any = getattr(pond.pubsub, "stats", None)
    values = stats.snapshot() if hasattr(stats, "snapshot") else {}
    backend = backend_name(pond.pubsub)
    for name, value in sorted(values.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield Family(
                f"pondsocket_pubsub_{name}_total",
                "counter",
                f"The {name} counter of the pubsub backend (docs/pubsub/).",
                ("backend",),
            ).add(value, backend)


def _history(pond: PondSocket) -> Iterable[Family]:
    stats = pond.history.stats
    for item in dataclasses.fields(stats):
        yield _one(
            f"pondsocket_history_{item.name}_total",
            "counter",
            f"Channel history: {item.name.replace('_', ' ')} (docs/recovery.md).",
            getattr(stats, item.name),
        )


def snapshot(pond: PondSocket) -> dict[str, float]:
    """Every sample as ``{'name{label="value"}': value}``, without ``prometheus_client``.

    Histograms give ``name_bucket{le=...}`` (cumulative), ``name_count`` and ``name_sum``.
    """
    out: dict[str, float] = {}
    for family in families(pond):
        for values, value in family.samples:
            out[family.name + _labels(family.labels, values)] = value
        for values, histogram in family.histograms:
            base = _labels(family.labels, values)
            for bound, count in histogram.cumulative():
                le = "+Inf" if bound == float("inf") else repr(bound)
                key = _labels((*family.labels, "le"), (*values, le))
                out[f"{family.name}_bucket{key}"] = count
            out[f"{family.name}_count{base}"] = histogram.count
            out[f"{family.name}_sum{base}"] = histogram.sum
    return out


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True)) + "}"
