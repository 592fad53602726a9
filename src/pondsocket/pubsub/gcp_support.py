"""Building blocks of the Google Cloud Pub/Sub backend (:mod:`pondsocket.pubsub.gcp`): its
errors, options, counters, URL parsing, the per-handler queue and worker, and the
re-sequencer that restores per-topic publish order on the receiving node."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError

if TYPE_CHECKING:
    pass

log = logging.getLogger("pondsocket.pubsub.gcp")

PUBSUB_MAX_MESSAGE = 10_000_000
"""Google Pub/Sub's limit for one message's data (10 MB)."""
ATTRIBUTE_VALUE_MAX = 1024
"""Google Pub/Sub's limit for an attribute value, in bytes: the PondSocket topic is one."""
ATTR_TOPIC = "pondsocket_topic"
ATTR_ORIGIN = "pondsocket_origin"
ATTR_SEQ = "pondsocket_seq"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")


def check_resource_name(kind: str, name: str) -> str:
    if not _NAME.match(name) or name.lower().startswith("goog"):
        raise InvalidOptionError(
            f"invalid Google Pub/Sub {kind} name {name!r}: 3-255 characters, starting with a "
            "letter, of letters, digits and - _ . ~ + %, not starting with 'goog'"
        )
    return name


@dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a :class:`~pondsocket.pubsub.gcp.GooglePubSub` (see
    ``docs/pubsub/gcp.md`` for each one)."""

    project: str
    emulator: str | None = None
    namespace: str = "default"
    topic: str | None = None
    subscription_prefix: str | None = None
    max_message_size: int = PUBSUB_MAX_MESSAGE - 4096
    batch_max_messages: int = 100
    batch_max_bytes: int = 1_000_000
    batch_max_latency: float = 0.01
    max_outstanding: int = 10_000
    publish_timeout: float = 5.0
    queue_size: int = 10_000
    flow_max_messages: int = 1000
    reorder_window: float = 0.5
    health_check_interval: float = 2.0
    rpc_timeout: float = 5.0
    backoff_base: float = 0.1
    backoff_cap: float = 2.0
    subscription_ttl: float = 86_400.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.project:
            raise InvalidOptionError("a Google Cloud project is needed: gcppubsub://PROJECT")
        if not 1 <= self.max_message_size <= PUBSUB_MAX_MESSAGE:
            raise InvalidOptionError(f"max_message_size must be between 1 and {PUBSUB_MAX_MESSAGE}")
        for name in ("batch_max_messages", "batch_max_bytes", "max_outstanding", "queue_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.flow_max_messages < 1:
            raise InvalidOptionError("flow_max_messages must be at least 1")
        for name in ("batch_max_latency", "publish_timeout", "reorder_window", "close_timeout"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(
                    f"{name} must not be negative, not {getattr(self, name)!r}"
                )
        for name in ("health_check_interval", "rpc_timeout", "backoff_base", "backoff_cap"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.subscription_ttl < 86_400:
            raise InvalidOptionError(
                "subscription_ttl must be at least 86400 s (Pub/Sub's minimum)"
            )
        check_resource_name("topic", self.topic_name)
        check_resource_name("subscription", self.subscription_base + "-" + "0" * 12)

    @property
    def topic_name(self) -> str:
        return self.topic or f"pondsocket-{self.namespace}"

    @property
    def subscription_base(self) -> str:
        return self.subscription_prefix or f"{self.topic_name}-node"


_FIELDS = {f.name: f for f in dataclasses.fields(Options)}


def parse_url(url: str) -> dict[str, Any]:
    """``gcppubsub://PROJECT?emulator=HOST:PORT&topic=NAME&...`` as keyword options."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "gcppubsub":
        raise InvalidOptionError(f"not a gcppubsub:// URL: {url!r}")
    options: dict[str, Any] = {"project": parts.netloc}
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        spec = _FIELDS.get(key)
        if spec is None or key == "project":
            raise InvalidOptionError(f"unknown gcppubsub:// URL option {key!r}")
        kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", "")
        options[key] = float(value) if kind == "float" else int(value) if kind == "int" else value
    return options


@dataclass(slots=True)
class GooglePubSubStats:
    """Counters of one :class:`~pondsocket.pubsub.gcp.GooglePubSub` (``pubsub.stats``)."""

    published: int = 0
    """Messages Pub/Sub confirmed (their publish future resolved)."""
    publish_errors: int = 0
    """Messages whose publish failed after the client's own retries (logged, lost)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError`."""
    received: int = 0
    """Messages pulled from this node's subscription."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    duplicates: int = 0
    """Redeliveries (and messages later than ``reorder_window``) dropped by the re-sequencer."""
    reorder_skips: int = 0
    """Gaps given up on after ``reorder_window`` (the missing messages never came)."""
    disconnects: int = 0
    """Outages detected (a failed streaming pull or health check)."""
    reconnects: int = 0
    """Outages that ended: topic and subscription checked, pull restarted, RECONNECTED."""
    recreated: int = 0
    """Times the topic or this node's subscription had vanished and was created again."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Stream:
    next: int | None = None
    held: dict[int, bytes] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    last: float = 0.0


class Resequencer:
    """Restores publish order per (publisher, topic): Pub/Sub without ordering keys may
    reorder. Each publisher numbers its messages per topic from 0; a message ahead of the
    next expected one is held up to ``window`` seconds for the missing ones, then the gap
    is skipped. Older numbers (redeliveries) are dropped. Runs on the event loop only."""

    def __init__(
        self,
        window: float,
        deliver: Callable[[str, bytes], None],
        stats: GooglePubSubStats,
    ) -> None:
        self._window = window
        self._deliver = deliver
        self._stats = stats
        self._streams: dict[tuple[str, str], _Stream] = {}

    def accept(self, origin: str, seq: int, topic: str, data: bytes) -> None:
        key = (origin, topic)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(next=0 if seq == 0 else None)
        stream.last = time.monotonic()
        if stream.next is not None and seq < stream.next:
            self._stats.duplicates += 1
            return
        if seq == stream.next and not stream.held:
            stream.next += 1
            self._deliver(topic, data)
            return
        stream.held[seq] = data
        self._drain(key, stream)
        if stream.held and stream.timer is None:
            stream.timer = asyncio.get_running_loop().call_later(
                self._window, self._give_up, key, stream
            )

    def _drain(self, key: tuple[str, str], stream: _Stream) -> None:
        while stream.next is not None and stream.next in stream.held:
            self._deliver(key[1], stream.held.pop(stream.next))
            stream.next += 1
        if not stream.held and stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None

    def _give_up(self, key: tuple[str, str], stream: _Stream) -> None:
        stream.timer = None
        if not stream.held:
            return
        if stream.next is not None:
            self._stats.reorder_skips += 1
        stream.next = min(stream.held)
        self._drain(key, stream)
        if stream.held:
            stream.timer = asyncio.get_running_loop().call_later(
                self._window, self._give_up, key, stream
            )

    def sweep(self, idle: float) -> None:
        """Forget streams without news for ``idle`` seconds (publishers come and go)."""
        horizon = time.monotonic() - idle
        for key, stream in list(self._streams.items()):
            if stream.last < horizon and not stream.held:
                del self._streams[key]

    def clear(self) -> None:
        for stream in self._streams.values():
            if stream.timer is not None:
                stream.timer.cancel()
        self._streams.clear()
