"""In-process PubSub: the embedded default. Several servers sharing one instance form a
cluster inside one process (handy for tests); it is a real backend, not a mock."""

from __future__ import annotations

import asyncio

from pondsocket.history.memory import MemoryHistory
from pondsocket.history.store import HistoryStore
from pondsocket.pubsub.base import (
    MessageHandler,
    PubSub,
    PubSubClosedError,
    Subscription,
    pattern_matches,
    validate_pattern,
)
from pondsocket.pubsub.delivery import QueuedSubscription


class InMemoryBroker:
    """The shared bus: every :class:`InMemoryPubSub` attached to one broker sees the others."""

    def __init__(self) -> None:
        self._clients: list[InMemoryPubSub] = []
        self.history = MemoryHistory()
        """The channel history its nodes share (the in-memory bus is one process)."""

    def attach(self, client: InMemoryPubSub) -> None:
        self._clients.append(client)

    @property
    def attached(self) -> int:
        """How many :class:`InMemoryPubSub` are attached."""
        return len(self._clients)

    def detach(self, client: InMemoryPubSub) -> None:
        if client in self._clients:
            self._clients.remove(client)

    def route(self, topic: str, data: bytes) -> bool:
        """Deliver to every client; ``True`` if some subscriber's queue is half full."""
        behind = False
        for client in self._clients:
            behind = client.dispatch(topic, data) or behind
        return behind


class InMemoryPubSub(PubSub):
    """One node's connection to an :class:`InMemoryBroker` (a private one by default)."""

    def __init__(self, broker: InMemoryBroker | None = None, queue_size: int = 10_000) -> None:
        self.broker = broker if broker is not None else InMemoryBroker()
        self.queue_size = queue_size
        self.dropped = 0
        """Messages dropped because a subscription's queue was full."""
        self._subscriptions: list[QueuedSubscription] = []
        self._closed = False
        self.broker.attach(self)

    def count_drop(self) -> None:
        self.dropped += 1

    def history_store(self) -> HistoryStore:
        return self.broker.history

    def alone(self) -> bool:
        """True while no other :class:`InMemoryPubSub` is attached to this one's broker:
        nothing published here can reach another node."""
        return self.broker.attached == 1

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this InMemoryPubSub is closed")

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        self._check_open()
        validate_pattern(pattern)
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.queue_size,
            on_drop=self.count_drop,
            detach=self._remove,
        )
        self._subscriptions.append(subscription)
        return subscription

    def _remove(self, subscription: QueuedSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def unsubscribe(self, pattern: str) -> None:
        self._check_open()
        for subscription in [s for s in self._subscriptions if s.pattern == pattern]:
            await subscription.cancel()

    async def publish(self, topic: str, data: bytes) -> None:
        self._check_open()
        if self.broker.route(topic, data):
            # A subscriber is falling behind: a publisher in a tight loop must not starve
            # the workers of this same loop until their queues overflow.
            await asyncio.sleep(0)

    def dispatch(self, topic: str, data: bytes) -> bool:
        behind = False
        for subscription in self._subscriptions:
            if pattern_matches(subscription.pattern, topic):
                subscription.offer(topic, data)
                behind = behind or subscription.backlog * 2 >= self.queue_size
        return behind

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.broker.detach(self)
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.stop()
