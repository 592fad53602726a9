"""In-process PubSub: the embedded default. Several servers sharing one instance form a
cluster inside one process (handy for tests); it is a real backend, not a mock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pondsocket.pubsub.base import (
    MessageHandler,
    PubSub,
    PubSubClosedError,
    Subscription,
    pattern_matches,
    validate_pattern,
)

log = logging.getLogger("pondsocket.pubsub")
DROP_LOG_INTERVAL = 10.0


class _MemorySubscription(Subscription):
    """A handler with its own bounded queue and worker, so it cannot block the others."""

    def __init__(self, owner: InMemoryPubSub, pattern: str, handler: MessageHandler) -> None:
        self.pattern = pattern
        self._owner = owner
        self._handler = handler
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(owner.queue_size)
        self._worker = asyncio.get_running_loop().create_task(self._run())
        self._last_drop_log = -DROP_LOG_INTERVAL
        self._dropped_since_log = 0

    def offer(self, topic: str, data: bytes) -> None:
        try:
            self._queue.put_nowait((topic, data))
        except asyncio.QueueFull:
            self._owner.dropped += 1
            self._dropped_since_log += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL:  # a log line, not a flood
                log.warning(
                    "pubsub handler for %r is behind: dropped %d message(s), last on %r",
                    self.pattern,
                    self._dropped_since_log,
                    topic,
                )
                self._last_drop_log, self._dropped_since_log = now, 0

    async def _run(self) -> None:
        while True:
            topic, data = await self._queue.get()
            try:
                await self._handler(topic, data)
            except Exception:
                log.exception("pubsub handler for %r failed on topic %r", self.pattern, topic)

    async def cancel(self) -> None:
        self._owner._remove(self)
        await self.stop()

    async def stop(self) -> None:
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker


class InMemoryBroker:
    """The shared bus: every :class:`InMemoryPubSub` attached to one broker sees the others."""

    def __init__(self) -> None:
        self._clients: list[InMemoryPubSub] = []

    def attach(self, client: InMemoryPubSub) -> None:
        self._clients.append(client)

    def detach(self, client: InMemoryPubSub) -> None:
        if client in self._clients:
            self._clients.remove(client)

    def route(self, topic: str, data: bytes) -> None:
        for client in self._clients:
            client.dispatch(topic, data)


class InMemoryPubSub(PubSub):
    """One node's connection to an :class:`InMemoryBroker` (a private one by default)."""

    def __init__(self, broker: InMemoryBroker | None = None, queue_size: int = 10_000) -> None:
        self.broker = broker if broker is not None else InMemoryBroker()
        self.queue_size = queue_size
        self.dropped = 0
        """Messages dropped because a subscription's queue was full."""
        self._subscriptions: list[_MemorySubscription] = []
        self._closed = False
        self.broker.attach(self)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this InMemoryPubSub is closed")

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        self._check_open()
        validate_pattern(pattern)
        subscription = _MemorySubscription(self, pattern, handler)
        self._subscriptions.append(subscription)
        return subscription

    def _remove(self, subscription: _MemorySubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def unsubscribe(self, pattern: str) -> None:
        self._check_open()
        for subscription in [s for s in self._subscriptions if s.pattern == pattern]:
            await subscription.cancel()

    async def publish(self, topic: str, data: bytes) -> None:
        self._check_open()
        self.broker.route(topic, data)
        # Yield, as a network backend would: a publisher in a tight loop must not starve
        # the subscribers' workers of this same loop until their queues overflow.
        await asyncio.sleep(0)

    def dispatch(self, topic: str, data: bytes) -> None:
        for subscription in self._subscriptions:
            if pattern_matches(subscription.pattern, topic):
                subscription.offer(topic, data)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.broker.detach(self)
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.stop()
