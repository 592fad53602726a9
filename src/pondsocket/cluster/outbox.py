"""The one queue from this node's channels to the broker.

Channels never await the broker: their envelopes wait here, bounded by
``ClusterOptions.outbox_size``, and one task publishes them in order. Each gets the next
per-topic ``seq`` and, in a signed cluster, its signature. What does not go out (the queue
is full, the broker refused it) is never lost silently: its sequence number is skipped, so
peers see a gap at the next envelope and resync, and the topic is handed to ``repair``
once the queue has drained, for the node to publish its whole state of that channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

from pondsocket.cluster.envelope import Envelope, EnvelopeType
from pondsocket.cluster.options import ClusterOptions
from pondsocket.cluster.signing import EnvelopeSigner
from pondsocket.cluster.stats import ClusterStats
from pondsocket.core.metrics import Histogram
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.pubsub.base import PubSub, PubSubClosedError

log = logging.getLogger("pondsocket.cluster")

_POLL = 0.05  # seconds between checks of a flush at shutdown

Repair = Callable[[str, str, str], None]
"""``repair(topic, endpoint_name, channel_name)``: publish our state of that channel."""

FLUSH_STALL = 1.0
"""At shutdown, seconds one publish may take before the flush gives up on the broker
(it hangs, or one shard is gone): shutdown never waits on a broker that is gone. While
the bus is known to be down the flush does not wait at all."""

CLOSED_TOPIC_COUNTERS = 65_536
"""Sequence counters of closed channels kept (about 100 bytes each): the bound on what
rooms opened once and left leave behind."""


class ClusterOutbox:
    def __init__(
        self,
        pubsub: PubSub,
        options: ClusterOptions,
        stats: ClusterStats,
        signer: EnvelopeSigner | None,
        repair: Repair,
    ) -> None:
        self._pubsub = pubsub
        self._size = options.outbox_size
        self._stats = stats
        self._signer = signer
        self._repair = repair
        self._queue: collections.deque[tuple[str, bytes, Envelope]] = collections.deque()
        self._seq: dict[str, int] = collections.defaultdict(int)
        self._closed_topics: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Channel topics that lost envelopes: repaired once the queue has drained.
        self._repairs: dict[str, tuple[str, str]] = {}
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._holding = True  # False once shutdown began: client input is not held back
        self._publish_started: float | None = None  # loop time of the publish under way
        self.bus_down = False
        """While the bus is down nothing waits for room and no repair is sent: local
        delivery goes on, and the resync after the outage repairs what peers missed."""
        self._drop_log = RateLimitedLog(log, interval=1.0)
        self._publish_log = RateLimitedLog(log)
        self.publish_latency = Histogram()
        """Seconds each successful ``pubsub.publish`` took (read by the metrics)."""

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._flush_loop(), name="pondsocket-cluster-flush")

    async def aclose(self, timeout: float) -> None:
        """Stop taking envelopes, publish what is queued, stop. The flush is bounded: by
        ``timeout``, by :data:`FLUSH_STALL` seconds for any one publish, and not tried at
        all while the bus is down (what is left is logged, and peers resync anyway)."""
        self._closed = True
        self._room.set()  # nobody waits for a queue that is not going to take more
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reason = "the time allowed ran out"
        while not self._drained.is_set():
            now = loop.time()
            started = self._publish_started
            if self.bus_down:
                reason = "the broker is disconnected"
                break
            if started is not None and now - started >= FLUSH_STALL:
                reason = f"the broker took no envelope for {FLUSH_STALL:g} s"
                break
            if now >= deadline or self._task is None or self._task.done():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(_POLL, deadline - now)):
                    await self._drained.wait()
        if not self._drained.is_set() and self._queue:
            log.warning("cluster node closed with %d unsent envelopes: %s", len(self), reason)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def put(self, topic: str, envelope: Envelope) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._size:
            self._stats.dropped += 1
            self._lost(topic, envelope)
            self._drop_log.warning(
                "cluster outbox full (%d): dropped %s (%d dropped so far); peers get this"
                " node's state of the channels concerned once it drains",
                len(self._queue),
                envelope.type,
                self._stats.dropped,
            )
            return
        if self._closed_topics:
            self._closed_topics.pop(topic, None)  # open again
        self._seq[topic] += 1
        envelope.fields["seq"] = self._seq[topic]
        data = envelope.encode()
        if self._signer is not None:
            data = self._signer.sign(data)
        self._queue.append((topic, data, envelope))
        self._drained.clear()
        self._wakeup.set()

    @property
    def numbered_topics(self) -> int:
        """How many topics have a sequence counter (open channels, and the most recently
        closed ones up to :data:`CLOSED_TOPIC_COUNTERS`)."""
        return len(self._seq)

    def forget(self, topic: str) -> None:
        """The channel of ``topic`` closed here. Its counter is kept, so the channel's
        next envelope still reveals a loss just before the close (a lost leave), but only
        for the last :data:`CLOSED_TOPIC_COUNTERS` closed channels: a node that saw a
        million short-lived rooms keeps no million counters. A channel reopened after its
        counter went numbers from 1 again, which peers take for a restart, not a gap."""
        self._closed_topics[topic] = None
        self._closed_topics.move_to_end(topic)
        while len(self._closed_topics) > CLOSED_TOPIC_COUNTERS:
            oldest, _ = self._closed_topics.popitem(last=False)
            self._seq.pop(oldest, None)

    async def wait_for_room(self) -> None:
        """Backpressure for client input: while the queue is more than half full (the
        broker or this process is not keeping up), wait until it drains below a quarter,
        so a flood slows its senders down (TCP) instead of losing envelopes."""
        if len(self._queue) * 2 < self._size or self._flusher_gone():
            return
        while len(self._queue) * 4 >= self._size and not self._flusher_gone():
            self._room.clear()
            await self._room.wait()

    def release_waiters(self) -> None:
        self._room.set()

    def stop_backpressure(self) -> None:
        """Shutdown has begun: :meth:`wait_for_room` returns at once from now on, so no
        connection stays open waiting for a broker that may be gone."""
        self._holding = False
        self._room.set()

    def _flusher_gone(self) -> bool:
        return (
            self._closed
            or not self._holding
            or self.bus_down
            or self._task is None
            or self._task.done()
        )

    def _lost(self, topic: str, envelope: Envelope) -> None:
        if envelope.type is EnvelopeType.NODE_HEARTBEAT:
            return
        if "seq" not in envelope.fields:
            self._seq[topic] += 1
        self._repairs[topic] = (envelope.endpoint_name, envelope.channel_name)

    def _send_repairs(self) -> None:
        budget = max(1, self._size // 2)
        while self._repairs and len(self._queue) < budget:
            topic = next(iter(self._repairs))
            endpoint, name = self._repairs.pop(topic)
            self._repair(topic, endpoint, name)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue:
                if len(self._queue) * 4 < self._size:
                    self._room.set()
                self._publish_started = loop.time()
                await self._publish(*self._queue.popleft())
                self._publish_started = None
                quiet = len(self._queue) * 4 < self._size
                if self._repairs and quiet and not self.bus_down:
                    self._send_repairs()
            self._drained.set()
            self._room.set()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _publish(self, topic: str, data: bytes, envelope: Envelope) -> None:
        started = time.perf_counter()
        try:
            await self._pubsub.publish(topic, data)
            self._stats.published += 1
            self.publish_latency.observe(time.perf_counter() - started)
        except PubSubClosedError:
            self._queue.clear()
        except Exception as exc:
            self._stats.publish_errors += 1
            self._lost(topic, envelope)
            self._publish_log.warning(
                "publishing to %s failed, %s lost (%s: %s); peers get this node's"
                " state of the channel once publishing works",
                topic,
                envelope.type,
                type(exc).__name__,
                exc,
            )
