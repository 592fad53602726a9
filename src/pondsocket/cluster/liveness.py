"""One heartbeat per node, and which peers are alive (docs/protocol.md, "Cluster traffic").

Pure decisions with time passed in: the node sends what :meth:`Liveness.heartbeat`
builds, feeds peers' heartbeats to :meth:`Liveness.observe` and acts on the outcome, and
asks :meth:`Liveness.expire` which peers went silent.
"""

from __future__ import annotations

import collections
import enum
from typing import Any

from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.options import UPSTREAM_HEARTBEAT_TIMEOUT, ClusterOptions
from pondsocket.cluster.topics import HEARTBEAT_NAME
from pondsocket.cluster.tracking import NodeRegistry


class Heard(enum.Enum):
    KNOWN = "known"
    NEW = "new"
    """A node not seen before: tell it our timeout at once (our first heartbeat may have
    gone out before it subscribed)."""
    RETURNED = "returned"
    """A node declared dead too early (a pause, a partition): its users were dropped."""
    LEFT = "left"
    """A node shutting down gracefully: its users left already; it is not dead."""


class Liveness:
    def __init__(self, node_id: str, options: ClusterOptions) -> None:
        self._node_id = node_id
        self._options = options
        # Peers seen only through their users (upstream Go: per-channel ids) get upstream's.
        self.registry = NodeRegistry(
            UPSTREAM_HEARTBEAT_TIMEOUT,
            options.heartbeat_timeout,
            floor=2 * options.heartbeat_interval,
        )
        self._buried: collections.deque[str] = collections.deque(maxlen=1000)

    def heartbeat(self, *, leaving: bool = False) -> Envelope:
        fields: dict[str, Any] = {
            "nodeId": self._node_id,
            "heartbeatIntervalMs": int(self._options.heartbeat_interval * 1000),
            "heartbeatTimeoutMs": int(self._options.heartbeat_timeout * 1000),
        }
        if leaving:  # our extension: peers forget us instead of timing us out
            fields["leaving"] = True
        return Envelope(
            EnvelopeType.NODE_HEARTBEAT, self._node_id, HEARTBEAT_NAME, HEARTBEAT_NAME, fields
        )

    def observe(
        self, node_id: str, timeout: float | None, now: float, *, leaving: bool = False
    ) -> Heard:
        """A peer's heartbeat (``timeout``: what it advertised, if anything)."""
        if leaving:
            self.registry.forget(node_id)
            return Heard.LEFT
        if not self.registry.heartbeat(node_id, now, timeout):
            return Heard.KNOWN
        if node_id in self._buried:
            self._buried.remove(node_id)
            return Heard.RETURNED
        return Heard.NEW

    def expire(self, now: float) -> list[str]:
        """Peers silent for their timeout: now dead (and remembered, in case they return)."""
        dead = self.registry.expire(now)
        self._buried.extend(dead)
        return dead
