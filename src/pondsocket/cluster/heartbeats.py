"""Heartbeats out and in: what the node does with :mod:`pondsocket.cluster.liveness`.

Liveness decides, with time passed in; this acts on its decisions: it publishes our
heartbeat every interval, tells a new peer our timeout at once, resyncs every channel when
a peer declared dead returns, and removes a dead peer's users from every channel (LEAVE
frames to local clients).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pondsocket.cluster.envelope import Envelope
from pondsocket.cluster.liveness import Heard, Liveness
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.resync import Resyncs
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.tracking import SequenceTracker

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.cluster")


class Heartbeats:
    def __init__(
        self,
        liveness: Liveness,
        send: Callable[[Envelope], None],
        *,
        channels: Mapping[str, Channel],
        sequences: SequenceTracker,
        resyncs: Resyncs,
        stats: ClusterStats,
        options: ClusterOptions,
        clock: Callable[[], float],
    ) -> None:
        self._liveness = liveness
        self._send = send
        self._channels = channels  # the node's open channels by topic (read only here)
        self._sequences = sequences
        self._resyncs = resyncs
        self._stats = stats
        self._options = options
        self._clock = clock

    def send(self, *, leaving: bool = False) -> None:
        self._send(self._liveness.heartbeat(leaving=leaving))

    async def run(self) -> None:
        while True:
            self.send()
            await asyncio.sleep(self._options.heartbeat_interval)

    def heard(self, node_id: str, timeout: float | None, *, leaving: bool = False) -> None:
        """A peer's heartbeat (``timeout``: what it advertised, if anything)."""
        heard = self._liveness.observe(node_id, timeout, self._clock(), leaving=leaving)
        if heard is Heard.LEFT:
            self._sequences.forget_source(node_id)
            return
        if heard is not Heard.KNOWN:
            self.send()  # it may have missed ours: it must know our timeout
        if heard is Heard.RETURNED:
            log.warning("node %s is back after being declared dead; resyncing", node_id)
            self._resyncs.resync_all("node_returned")

    def expire(self, now: float) -> None:
        """Peers silent for their timeout are dead: their users leave every channel."""
        for node_id in self._liveness.expire(now):
            self._died(node_id)

    def _died(self, node_id: str) -> None:
        self._stats.dead_nodes += 1
        self._sequences.forget_source(node_id)
        removed = 0
        for channel in list(self._channels.values()):
            for user_id in channel.remote_users_of(node_id):
                channel.forget_remote(user_id)
                removed += 1
        log.warning(
            "node %s stopped heartbeating: removed its %d channel members", node_id, removed
        )
