"""The local handlers of a backend, by pattern: exact topics and ``prefix.*`` patterns.

Shared by the backends whose broker delivers every message of the cluster to the node
(one queue or subscription per node: SNS/SQS, Google Pub/Sub, Kafka's topics), so the
node itself picks the handlers of each message.
"""

from __future__ import annotations

from pondsocket.pubsub.delivery import QueuedSubscription


class HandlerTable:
    def __init__(self) -> None:
        self._exact: dict[str, list[QueuedSubscription]] = {}
        # pattern -> its handlers; the prefix is the pattern without its ".*"
        self._prefixes: dict[str, list[QueuedSubscription]] = {}

    def _table(self, pattern: str) -> dict[str, list[QueuedSubscription]]:
        return self._prefixes if pattern.endswith(".*") else self._exact

    def add(self, subscription: QueuedSubscription) -> bool:
        """Register a handler; ``True`` if it is the first of its pattern."""
        handlers = self._table(subscription.pattern).setdefault(subscription.pattern, [])
        handlers.append(subscription)
        return len(handlers) == 1

    def remove(self, subscription: QueuedSubscription) -> bool:
        """Forget a handler; ``True`` if its pattern has no handler left."""
        table = self._table(subscription.pattern)
        handlers = table.get(subscription.pattern)
        if handlers is None:
            return False
        if subscription in handlers:
            handlers.remove(subscription)
        if handlers:
            return False
        del table[subscription.pattern]
        return True

    def handlers(self, pattern: str) -> list[QueuedSubscription]:
        """A copy of the handlers of ``pattern`` (to cancel them one by one)."""
        return list(self._table(pattern).get(pattern, ()))

    def pop(self, pattern: str) -> list[QueuedSubscription]:
        """Forget every handler of ``pattern`` and return them."""
        return self._table(pattern).pop(pattern, [])

    def clear(self) -> list[QueuedSubscription]:
        """Forget every handler and return them."""
        handlers = [s for t in (self._exact, self._prefixes) for v in t.values() for s in v]
        self._exact.clear()
        self._prefixes.clear()
        return handlers

    @property
    def patterns(self) -> list[str]:
        return [*self._exact, *self._prefixes]

    def offer(self, topic: str, data: bytes) -> None:
        """Queue a message for every handler whose pattern matches ``topic``."""
        for subscription in self._exact.get(topic, ()):
            subscription.offer(topic, data)
        for pattern, subscriptions in self._prefixes.items():
            if topic.startswith(pattern[:-2]):
                for subscription in subscriptions:
                    subscription.offer(topic, data)
