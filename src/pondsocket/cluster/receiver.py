"""Where the node's subscriptions deliver: each envelope passes the gate
(:mod:`~pondsocket.cluster.gate`), a sequence gap starts a resync, and what is left is
applied to its channel, or to the liveness for a heartbeat (:mod:`~pondsocket.cluster.inbound`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pondsocket.cluster import inbound
from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.gate import InboundGate
from pondsocket.cluster.resync import Resyncs

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel


class Receiver:
    def __init__(
        self,
        gate: InboundGate,
        channels: Mapping[str, Channel],
        resyncs: Resyncs,
        node: inbound.InboundNode,
    ) -> None:
        self._gate = gate
        self._channels = channels  # the node's open channels by topic (read only here)
        self._resyncs = resyncs
        self._node = node

    def heartbeat_topic(self, topic: str, data: bytes) -> None:
        envelope = self.accept(topic, data)
        if envelope is not None and envelope.type is EnvelopeType.NODE_HEARTBEAT:
            inbound.heartbeat(self._node, envelope)

    def channel_topic(self, topic: str, data: bytes) -> None:
        envelope = self.accept(topic, data)
        channel = self._channels.get(topic)
        if envelope is None or channel is None:
            return
        if envelope.type is not EnvelopeType.NODE_HEARTBEAT:
            inbound.apply(self._node, channel, topic, envelope)

    def accept(self, topic: str, data: bytes) -> Envelope | None:
        """The envelope in ``data`` if the gate lets it in (``None``: dropped)."""
        accepted = self._gate.accept(topic, data)
        if accepted is None:
            return None
        envelope, gap = accepted
        if gap:
            self._resyncs.gap(topic, envelope.source_node_id)
        return envelope
