"""Resyncing channels whose messages may have been lost (docs/protocol.md, ``seq``).

A resync asks every node for the channel's state again and publishes ours unasked; the
remote users nobody confirms within ``resync_window`` are dropped
(:class:`pondsocket.cluster.tracking.PendingResyncs` keeps who is still unconfirmed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.stats import ClusterStats
from pondsocket.cluster.tracking import PendingResyncs

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.cluster")

ResyncListener = Callable[[str, str], None]
"""``listener(channel_name, reason)``; reasons: ``reconnect``, ``gap``, ``node_returned``."""


class StateExchange(Protocol):
    """How a resync reaches the other nodes (implemented by the cluster node)."""

    def topic_of(self, channel: Channel) -> str: ...

    def request_state(self, channel: Channel) -> None: ...

    def answer_state(self, channel: Channel) -> None: ...


class Resyncs:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        exchange: StateExchange,
        stats: ClusterStats,
        options: ClusterOptions,
        clock: Callable[[], float],
    ) -> None:
        self._channels = channels  # the node's open channels by topic (read only here)
        self._exchange = exchange
        self._stats = stats
        self._options = options
        self._clock = clock
        self._pending = PendingResyncs()
        self._listeners: list[ResyncListener] = []
        self.channel_resynced: Callable[[Channel, str], None] | None = None
        """Told of each resync with the channel itself (the history service fills gaps)."""

    def on_resync(self, listener: ResyncListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def resync(self, channel: Channel, reason: str) -> None:
        unconfirmed = {uid for uid in channel.all_user_ids if not channel.has_user(uid)}
        deadline = self._clock() + self._options.resync_window
        self._pending.begin(self._exchange.topic_of(channel), unconfirmed, deadline)
        self._stats.resyncs += 1
        self._exchange.request_state(channel)
        self._exchange.answer_state(channel)  # peers that lost our messages learn our truth
        log.info("resyncing channel %s (%s)", channel.name, reason)
        if self.channel_resynced is not None:
            self.channel_resynced(channel, reason)
        for listener in list(self._listeners):
            try:
                listener(channel.name, reason)
            except Exception:
                log.exception("resync listener failed")

    def resync_all(self, reason: str) -> None:
        for channel in list(self._channels.values()):
            self.resync(channel, reason)

    def gap(self, topic: str, source: str) -> None:
        """Envelopes from ``source`` on ``topic`` were lost."""
        self._stats.gaps += 1
        log.warning("messages from node %s on %s were lost; resyncing", source, topic)
        channel = self._channels.get(topic)
        if channel is not None:
            self.resync(channel, "gap")
        else:  # a heartbeat-topic gap: the link itself dropped messages
            self.resync_all("gap")

    def confirm(self, topic: str, user_ids: set[str]) -> None:
        self._pending.confirm(topic, user_ids)

    def forget(self, topic: str) -> None:
        self._pending.forget(topic)

    def expire(self, now: float) -> None:
        """Drop the remote users of resyncs past their deadline that nobody confirmed."""
        for topic, unconfirmed in self._pending.expire(now):
            channel = self._channels.get(topic)
            if channel is not None:
                for user_id in unconfirmed:
                    channel.forget_remote(user_id)
