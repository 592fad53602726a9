"""Pure bookkeeping for the cluster layer, with time passed in: which nodes are alive,
which messages were seen, and whether a peer's sequence numbers skipped some."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass


@dataclass(slots=True)
class _Peer:
    last_seen: float
    timeout: float
    last_heartbeat: float | None = None


class NodeRegistry:
    """Last-seen times of peer nodes; a node is dead once silent for its timeout.

    A peer that advertises its timeout gets it. One that advertises none (JS and upstream
    Python nodes send only ``nodeId``) gets ours (``own_timeout``), as JS nodes give every
    peer theirs, so its death is seen as soon as any other's; once two heartbeats show it
    beats slower than that, three of its gaps, so it is not declared dead again between two
    healthy heartbeats. A node known only from its users gets ``default_timeout``.
    """

    def __init__(
        self, default_timeout: float, own_timeout: float | None = None, floor: float = 0.0
    ) -> None:
        self.default_timeout = default_timeout
        self.own_timeout = own_timeout if own_timeout is not None else default_timeout
        # An advertised timeout below this is raised to it: a forged heartbeat with
        # heartbeatTimeoutMs: 1 must not make a node flap dead and alive.
        self.floor = floor
        self._peers: dict[str, _Peer] = {}

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def timeout_of(self, node_id: str) -> float | None:
        peer = self._peers.get(node_id)
        return None if peer is None else peer.timeout

    def heartbeat(self, node_id: str, now: float, timeout: float | None = None) -> bool:
        """Record a heartbeat (``timeout``: what the peer advertised, if anything); ``True``
        if the node was not known before."""
        peer = self._peers.get(node_id)
        if timeout is None:
            gap = None if peer is None or peer.last_heartbeat is None else now - peer.last_heartbeat
            timeout = self.own_timeout if gap is None else max(self.own_timeout, 3 * gap)
        timeout = max(timeout, self.floor)
        if peer is None:
            self._peers[node_id] = _Peer(now, timeout, now)
            return True
        peer.timeout = timeout
        peer.last_seen = peer.last_heartbeat = now
        return False

    def noticed(self, node_id: str, now: float) -> None:
        """A node owns users we just learnt of: start its clock if it has none yet."""
        if node_id not in self._peers:
            self._peers[node_id] = _Peer(now, self.default_timeout)

    def expire(self, now: float) -> list[str]:
        """Remove and return the nodes whose timeout has passed."""
        dead = [nid for nid, p in self._peers.items() if now - p.last_seen >= p.timeout]
        for node_id in dead:
            del self._peers[node_id]
        return dead

    def forget(self, node_id: str) -> None:
        self._peers.pop(node_id, None)

    def last_seen(self) -> dict[str, float]:
        """Each known peer and when it was last heard from (the clock ``heartbeat`` got)."""
        return {node_id: peer.last_seen for node_id, peer in self._peers.items()}


class RecentIds:
    """The last ``size`` message ids, to drop duplicates."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[str] = collections.deque(maxlen=size)
        self._ids: set[str] = set()

    def seen(self, message_id: str) -> bool:
        """``True`` if the id was seen before; records it otherwise."""
        if message_id in self._ids:
            return True
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(message_id)
        self._ids.add(message_id)
        return False


class SeqStatus(enum.Enum):
    FIRST = "first"
    IN_ORDER = "in_order"
    GAP = "gap"
    """Messages between the last one seen and this one were lost."""
    RESTART = "restart"
    """The sequence went backwards: the peer restarted its counter."""


class SequenceTracker:
    """Per (source node, topic) sequence numbers of received envelopes."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def observe(self, source: str, topic: str, seq: int) -> SeqStatus:
        key = (source, topic)
        last = self._last.get(key)
        self._last[key] = seq
        if last is None:
            return SeqStatus.FIRST
        if seq == last + 1:
            return SeqStatus.IN_ORDER
        return SeqStatus.GAP if seq > last else SeqStatus.RESTART

    def forget_source(self, source: str) -> None:
        for key in [k for k in self._last if k[0] == source]:
            del self._last[key]

    def forget_topic(self, topic: str) -> None:
        for key in [k for k in self._last if k[1] == topic]:
            del self._last[key]


class PendingResyncs:
    """Channels whose state was asked for again, and the remote users nobody has
    confirmed since: those still unconfirmed at the deadline have left."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[float, set[str]]] = {}

    def begin(self, topic: str, unconfirmed: set[str], deadline: float) -> None:
        """Start (or extend) a resync; users unconfirmed by an earlier one stay so."""
        earlier = self._pending.get(topic)
        if earlier is not None:
            unconfirmed |= earlier[1]
        self._pending[topic] = (deadline, unconfirmed)

    def confirm(self, topic: str, user_ids: set[str]) -> None:
        pending = self._pending.get(topic)
        if pending is not None:
            pending[1].difference_update(user_ids)

    def forget(self, topic: str) -> None:
        self._pending.pop(topic, None)

    def expire(self, now: float) -> list[tuple[str, set[str]]]:
        """Remove and return ``(topic, unconfirmed users)`` of resyncs past their deadline."""
        done = [(t, users) for t, (deadline, users) in self._pending.items() if now >= deadline]
        for topic, _ in done:
            del self._pending[topic]
        return done
