"""Building blocks of the NATS backend (:mod:`pondsocket.pubsub.nats`): its errors,
options, counters, subscription entries and the per-handler queue and worker."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError
from pondsocket.pubsub.delivery import QueuedSubscription

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription as NatsClientSubscription


log = logging.getLogger("pondsocket.pubsub.nats")

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a :class:`~pondsocket.pubsub.nats.NatsPubSub` (see
    ``docs/pubsub/nats.md`` for each one)."""

    subject_prefix: str = ""
    max_message_size: int | None = None
    queue_size: int = 10_000
    max_reconnect_attempts: int = -1
    reconnect_wait: float = 0.5
    reconnect_jitter: float = 0.5
    pending_size: int = 8 * MiB
    connect_timeout: float = 5.0
    ping_interval: float = 10.0
    subscribe_timeout: float = 5.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("queue_size", "pending_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.max_message_size is not None and self.max_message_size < 1:
            raise InvalidOptionError(
                f"max_message_size must be at least 1, not {self.max_message_size}"
            )
        if self.max_reconnect_attempts < -1:
            raise InvalidOptionError("max_reconnect_attempts must be -1 (for ever), 0 or positive")
        for name in ("reconnect_wait", "reconnect_jitter", "subscribe_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(
                    f"{name} must not be negative, not {getattr(self, name)!r}"
                )
        for name in ("connect_timeout", "ping_interval"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive, not {getattr(self, name)!r}")


@dataclass(slots=True)
class NatsPubSubStats:
    """Counters of one :class:`~pondsocket.pubsub.nats.NatsPubSub` (``pubsub.stats``)."""

    published: int = 0
    """Messages handed to the client (sent, or buffered while NATS is unreachable)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError`."""
    received: int = 0
    """Messages delivered by NATS to this node's subscriptions (before prefix filtering)."""
    filtered: int = 0
    """Messages a partial-token prefix wildcard delivered that did not match the prefix."""
    undecodable: int = 0
    """Messages on subjects that are not encoded topics (published by something else)."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    slow_consumer: int = 0
    """Messages nats-py dropped because a subscription's own buffer was full."""
    disconnects: int = 0
    """Connections lost (``DISCONNECTED`` notified)."""
    reconnects: int = 0
    """Reconnections with every subscription replayed (``RECONNECTED`` notified)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False, slots=True)
class Entry:
    """One NATS subscription and the handlers sharing it."""

    pattern: str
    subject: str
    prefix: str | None  # a prefix pattern's prefix, None for an exact topic
    filtered: bool  # the wildcard is wider than the prefix: check every message
    handlers: list[QueuedSubscription] = field(default_factory=list)
    sub: NatsClientSubscription | None = None


async def flush_in_order(client: Client) -> None:
    """Return once NATS has processed every command ``client`` queued before the call.

    nats-py 2.16's ``flush()`` writes its PING straight to the socket, ahead of the commands
    its flusher task has not written yet: the PONG can come back before the server has seen
    a SUB queued just before, and a message published meanwhile misses the subscription.
    Writing the queue first (what ``flush()`` should do) puts the PING behind it again.
    """
    write_queued: Any = getattr(client, "_flush_pending", None)
    if callable(write_queued):
        await write_queued(force_flush=True)
    await client.flush()
