"""Building blocks of the Kafka backend (:mod:`pondsocket.pubsub.kafka`): its errors,
options, counters, the mapping of PondSocket topics and patterns to Kafka topics, and the
per-handler queue and worker."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import (
    PubSubError,
)
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError

if TYPE_CHECKING:
    pass

MiB = 1024 * 1024
DEFAULT_PORT = 9092
MAX_TOPIC_NAME = 249  # Kafka's limit on a topic name

_LAYOUT = re.compile(r"([^:]+):v1:([^:]+):")
"""The head of a PondSocket cluster topic: ``<prefix>:v1:<namespace>:`` (docs/protocol.md)."""
_LAYOUT_START = re.compile(r"[^:]*|[^:]+:(v|v1)?|[^:]+:v1:[^:]*")
"""Texts that are not a complete layout head but could begin one (``pond``, ``pond:v1:de``)."""
_ILLEGAL = re.compile(r"[^a-zA-Z0-9._-]")


class PatternSpansTopicsError(PubSubError, ValueError):
    """A prefix pattern could match topics of several namespaces, hence of several Kafka
    topics (namespace mapping); pass ``kafka_topic=...`` to use one Kafka topic."""


def parse_url(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` -> the bootstrap list ``h1:9092,h2:9092``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "kafka":
        raise InvalidOptionError(f"not a kafka:// URL: {url!r}")
    hosts = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        host = host.strip()
        if not host:
            continue
        if not re.search(r":\d+$", host):
            host = f"{host}:{DEFAULT_PORT}"
        hosts.append(host)
    if not hosts:
        raise InvalidOptionError(f"no broker address in {url!r}")
    return ",".join(hosts)


def legal_topic_name(name: str) -> str:
    """``name`` if Kafka accepts it, else a legal name derived from it (illegal characters
    replaced, plus a hash of the original so two names do not merge)."""
    if name not in ("", ".", "..") and len(name) <= MAX_TOPIC_NAME and not _ILLEGAL.search(name):
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{_ILLEGAL.sub('_', name)[: MAX_TOPIC_NAME - 11]}-{digest}"


@dataclass(frozen=True, slots=True)
class TopicMapper:
    """Which Kafka topic carries a PondSocket topic.

    * ``kafka_topic`` set: every PondSocket topic on that one Kafka topic.
    * otherwise one Kafka topic per PondSocket namespace: ``<prefix>:v1:<namespace>:...``
      goes to ``<topic_prefix><prefix>.<namespace>``; any other topic to
      ``<topic_prefix><fallback_topic>``.

    The record key is always the full PondSocket topic: nodes filter on it, so two names
    sharing a Kafka topic costs bandwidth, never correctness.
    """

    kafka_topic: str | None = None
    topic_prefix: str = ""
    fallback_topic: str = "pondsocket-other"

    def for_topic(self, topic: str) -> str:
        if self.kafka_topic is not None:
            return legal_topic_name(self.kafka_topic)
        head = _LAYOUT.match(topic)
        if head is None:
            return legal_topic_name(self.topic_prefix + self.fallback_topic)
        return legal_topic_name(f"{self.topic_prefix}{head[1]}.{head[2]}")

    def for_pattern(self, pattern: str) -> str:
        if self.kafka_topic is not None or not pattern.endswith(".*"):
            return self.for_topic(pattern)
        prefix = pattern[:-2]
        if _LAYOUT.match(prefix) is None and _LAYOUT_START.fullmatch(prefix) is not None:
            raise PatternSpansTopicsError(
                f"pattern {pattern!r} could match topics of several namespaces, which the "
                "namespace mapping puts on different Kafka topics; subscribe to "
                "'<prefix>:v1:<namespace>:...' patterns or pass kafka_topic='...'"
            )
        return self.for_topic(prefix)


@dataclass(frozen=True, slots=True)
class Options:
    bootstrap_servers: str
    mapper: TopicMapper
    client_id: str
    partitions: int = 1
    replication_factor: int = 1
    create_topics: bool = True
    max_message_size: int = MiB
    linger_ms: int = 5
    max_batch_size: int = 64 * 1024
    acks: int | str = 1
    compression_type: str | None = None
    outbox_size: int = 10_000
    queue_size: int = 10_000
    fetch_max_wait_ms: int = 100
    health_check_interval: float = 1.0
    probe_timeout: float = 3.0
    request_timeout_ms: int = 10_000
    backoff_base: float = 0.1
    backoff_cap: float = 2.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("partitions", "replication_factor", "max_message_size", "outbox_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("health_check_interval", "probe_timeout", "backoff_base", "backoff_cap"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.queue_size < 1:
            raise InvalidOptionError("queue_size must be at least 1")

    @property
    def fetch_size(self) -> int:
        """Fetch and request sizes that fit a maximal message and its record overhead."""
        return max(MiB, self.max_message_size + 64 * 1024)


@dataclass(slots=True)
class KafkaPubSubStats:
    """Counters of one :class:`~pondsocket.pubsub.kafka.KafkaPubSub` (``pubsub.stats``)."""

    published: int = 0
    """Records Kafka acknowledged."""
    publish_errors: int = 0
    """Records Kafka did not acknowledge (lost: pub/sub is at most once)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError` (outbox full)."""
    buffered: int = 0
    """Messages held in the outbox during an outage and sent after it."""
    received: int = 0
    """Records read from Kafka (before filtering by pattern)."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    topics_created: int = 0
    """Kafka topics this instance created."""
    disconnects: int = 0
    """Outages detected (``DISCONNECTED`` notified)."""
    reconnects: int = 0
    """Outages that ended (``RECONNECTED`` notified)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
