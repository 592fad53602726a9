"""PubSub: the bus between nodes. ``InMemoryPubSub`` is the embedded default."""

from pondsocket.pubsub.base import (
    BusState,
    MessageHandler,
    MessageTooLargeError,
    PubSub,
    PubSubClosedError,
    PubSubError,
    PubSubUnavailableError,
    Subscription,
)
from pondsocket.pubsub.memory import InMemoryBroker, InMemoryPubSub

__all__ = [
    "BusState",
    "InMemoryBroker",
    "InMemoryPubSub",
    "MessageHandler",
    "MessageTooLargeError",
    "PubSub",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "Subscription",
]
