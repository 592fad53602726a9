"""What the admin page shows, as one JSON-ready snapshot of a server: its node and the
peers it hears, its channels, the members of one channel, its connections and their
queues, its counters (the page turns two snapshots into rates) and the last errors.

Read between two of the loop's callbacks, like a metrics scrape. Every list is bounded
(:data:`LIST_LIMIT`) and says how long it would be, so a node with 100k channels answers
in a few hundred KiB."""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any

import orjson

from pondsocket.core.channel import Channel
from pondsocket.core.outlet import Outlet

if TYPE_CHECKING:
    from pondsocket.server import PondSocket

LIST_LIMIT = 500
"""Most rows of any list (channels, members, connections)."""
_MAX_PRESENCE_TEXT = 300  # characters of one presence shown: up to max_presence_bytes each

# Counters the page shows as rates; all plain ints, so they only grow.
RATE_COUNTERS = (
    "messages_received",
    "fanout_broadcast_frames",
    "fanout_presence_frames",
    "connections_accepted",
    "connections_declined",
    "joins_declined",
    "rate_limited",
    "protocol_errors",
    "handler_errors",
    "frames_dropped",
    "slow_consumer_closes",
)


def snapshot(
    pond: PondSocket, *, channel_filter: str = "", selected: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The page's data. ``selected``: ``(endpoint path, channel name)`` whose members to
    list; ``channel_filter``: only channels whose name contains it."""
    node = pond.cluster
    heard = node.clock()
    peers = sorted(node.registry.last_seen().items())
    counters: dict[str, int] = {name: getattr(pond.metrics, name) for name in RATE_COUNTERS}
    counters["cluster_published"] = node.stats.published
    counters["cluster_received"] = node.stats.received
    return {
        "node": {
            "id": node.node_id,
            "notReady": pond.not_ready(),
            "pubsub": type(pond.pubsub).__name__,
        },
        "nodes": [
            {"id": node.node_id, "self": True, "lastHeard": 0.0},
            *({"id": nid, "self": False, "lastHeard": round(heard - at, 1)} for nid, at in peers),
        ],
        "clock": time.monotonic(),
        "counters": counters,
        "channels": _channels(pond, channel_filter),
        "members": None if selected is None else _members(pond, *selected),
        "connections": _connections(pond),
        "errors": [
            {"time": e.time, "kind": e.kind, "where": e.where, "error": e.error, "count": e.count}
            for e in reversed(pond.metrics.recent_errors.entries())
        ],
        "limit": LIST_LIMIT,
    }


def queue_bytes(outlet: Outlet) -> int | None:
    """Bytes waiting in a connection's outgoing queue (``None``: its outlet cannot say)."""
    pending = getattr(outlet, "pending_bytes", None)
    return pending if isinstance(pending, int) else None


def _channels(pond: PondSocket, channel_filter: str) -> dict[str, Any]:
    rows: list[tuple[int, str, str, Channel]] = []
    for endpoint in pond.endpoints:
        for name in endpoint.channel_names:
            channel = endpoint.get_channel(name)
            if channel is not None and channel_filter in name:
                rows.append((channel.counts()[1], endpoint.path, name, channel))
    # The busiest first: those are the ones an operator looks for.
    shown = heapq.nsmallest(LIST_LIMIT, rows, key=lambda row: (-row[0], row[1], row[2]))
    items = []
    for _, path, name, channel in shown:
        local, everywhere, presence = channel.counts()
        items.append(
            {
                "endpoint": path,
                "name": name,
                "members": everywhere,
                "local": local,
                "presence": presence,
            }
        )
    return {"total": len(rows), "items": items}


def _members(pond: PondSocket, endpoint_path: str, name: str) -> dict[str, Any]:
    found = next((e for e in pond.endpoints if e.path == endpoint_path), None)
    channel = None if found is None else found.get_channel(name)
    base: dict[str, Any] = {"endpoint": endpoint_path, "name": name}
    if channel is None:
        return {**base, "open": False, "total": 0, "items": []}
    user_ids = channel.all_user_ids  # local members first
    items = []
    for user_id in itertools.islice(user_ids, LIST_LIMIT):
        user = channel.get_user(user_id)
        member = channel.local_member(user_id)
        presence = None if user is None else user.presence
        node_id = pond.cluster.node_id if member is not None else channel.remote_owner(user_id)
        items.append(
            {
                "id": user_id,
                "node": node_id,
                "local": member is not None,
                "presence": None if presence is None else _presence_text(presence),
                "queueBytes": None if member is None else queue_bytes(member.outlet),
            }
        )
    return {**base, "open": True, "total": len(user_ids), "items": items}


def _presence_text(presence: dict[str, Any]) -> str:
    text = orjson.dumps(presence, option=orjson.OPT_SORT_KEYS).decode()
    if len(text) > _MAX_PRESENCE_TEXT:
        return text[: _MAX_PRESENCE_TEXT - 1] + "\u2026"
    return text


def _connections(pond: PondSocket) -> dict[str, Any]:
    connections = [c for e in pond.endpoints for c in e.connections()]
    # The fullest queues first: a slow consumer is what an operator opens this list for.
    depth = {c.id: queue_bytes(c.outlet) or 0 for c in connections}
    shown = heapq.nsmallest(LIST_LIMIT, connections, key=lambda c: (-depth[c.id], c.id))
    return {
        "total": len(connections),
        "queueLimit": pond.options.outbox_max_bytes,
        "items": [
            {
                "id": c.id,
                "endpoint": c.endpoint_path,
                "address": c.address,
                "channels": len(c.channels),
                "queueBytes": queue_bytes(c.outlet),
            }
            for c in shown
        ],
    }
