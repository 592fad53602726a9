"""Building blocks of the RabbitMQ backend (:mod:`pondsocket.pubsub.rabbitmq`): the
topic <-> routing-key encoding, errors, options, counters and the per-handler queue and
worker.

Routing-key encoding (``docs/pubsub/rabbitmq.md``, "Encoding"): a topic is split on ``:``
into words; in each word every character outside ``[A-Za-z0-9_-]`` is written as ``~XX``
per UTF-8 byte (upper-case hex), so ``.``, ``*``, ``#`` and ``~`` itself never appear raw;
an empty word is written as a lone ``~``; the words are joined with ``.``. The encoding is
injective and :func:`decode_routing_key` reverses it. Keys longer than
:data:`MAX_KEY` bytes are replaced by a hash-based key (see :func:`routing_key`).
"""

from __future__ import annotations

import hashlib
import logging
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import (
    PubSubError,
)
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError
from pondsocket.pubsub.delivery import QueuedSubscription

if TYPE_CHECKING:
    pass

log = logging.getLogger("pondsocket.pubsub.rabbitmq")

MiB = 1024 * 1024
MAX_KEY = 255
"""AMQP routing keys are short strings: at most 255 bytes."""
KEPT_LIMIT = 200
"""Bytes of leading words a hash-based key keeps (so prefix bindings still match it)."""
HASH_WORD = "~h"
"""Marks a hash-based key: ``<leading words>.~h.<32 hex digits of SHA-256(topic)>``."""
PROBE_WORD = "~p"
"""Routing keys ``~p.<token>`` carry this node's reconnection probe to its own queue."""
TOPIC_HEADER = "pondsocket-topic"
"""The message header that carries the original topic."""
MAX_TOPIC = 2048
"""Longest topic or pattern in UTF-8 bytes: the topic header must fit in one AMQP content
header frame (``frame_max`` is at least 4096 bytes)."""

_SAFE = frozenset(string.ascii_letters + string.digits + "_-")
_HEX = frozenset("0123456789ABCDEF")


def _encode_word(word: str) -> str:
    if not word:
        return "~"
    if all(ch in _SAFE for ch in word):
        return word
    out: list[str] = []
    for ch in word:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _decode_word(word: str) -> str:
    if word == "~":
        return ""
    raw = bytearray()
    i = 0
    while i < len(word):
        ch = word[i]
        if ch == "~":
            pair = word[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError(f"bad escape in routing-key word {word!r}")
            raw.append(int(pair, 16))
            i += 3
        elif ch in _SAFE:
            raw.append(ord(ch))
            i += 1
        else:
            raise ValueError(f"character {ch!r} cannot appear in an encoded word {word!r}")
    return raw.decode("utf-8", "surrogatepass")


def encode_words(text: str) -> list[str]:
    """The encoded words of ``text`` (split on ``:``)."""
    return [_encode_word(word) for word in text.split(":")]


def _leading(words: list[str], limit: int) -> list[str]:
    """The longest run of leading ``words`` whose joined length is at most ``limit``."""
    kept: list[str] = []
    size = -1
    for word in words:
        size += len(word) + 1
        if size > limit:
            break
        kept.append(word)
    return kept


def routing_key(topic: str) -> str:
    """The routing key a topic is published with (and an exact subscription binds).

    Normally the reversible encoding. When that exceeds :data:`MAX_KEY` bytes: the longest
    run of leading encoded words within :data:`KEPT_LIMIT` bytes, then ``~h`` and 32 hex
    digits of the topic's SHA-256; receivers take the topic from the header and filter."""
    if not topic:
        raise InvalidOptionError("pubsub topic is empty")
    words = encode_words(topic)
    key = ".".join(words)
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return ".".join([*_leading(words, KEPT_LIMIT), HASH_WORD, digest])


def binding_key(pattern: str) -> str:
    """The binding key of a PubSub pattern: exact topics bind their routing key; a prefix
    pattern ``prefix.*`` binds its complete words then ``*.#`` (the word the prefix ends
    in, possibly empty, then anything), or, when those words exceed :data:`KEPT_LIMIT`,
    the leading words that fit then ``#``. Prefix matches are then made exact on the node
    (:func:`pondsocket.pubsub.base.pattern_matches`)."""
    if not pattern.endswith(".*"):
        return routing_key(pattern)
    words = encode_words(pattern[:-2])[:-1]  # the last word may be partial: not bound
    kept = _leading(words, KEPT_LIMIT)
    if len(kept) == len(words):
        return ".".join([*words, "*", "#"])
    return ".".join([*kept, "#"])


def decode_routing_key(key: str) -> str | None:
    """The topic of a routing key made by :func:`routing_key`; ``None`` for a hash-based or
    probe key (their topic travels in the header only). Raises ``ValueError`` for a key
    this encoding cannot produce."""
    words = key.split(".")
    if HASH_WORD in words or words[0] == PROBE_WORD:
        return None
    return ":".join(_decode_word(word) for word in words)


def message_topic(key: str, headers: Mapping[str, Any] | None) -> str | None:
    """The topic of a received message: its header, else its decoded routing key; ``None``
    when neither gives one."""
    header = (headers or {}).get(TOPIC_HEADER)
    try:
        if isinstance(header, bytes | bytearray):
            return bytes(header).decode("utf-8", "surrogatepass")
        if isinstance(header, str):
            return header
        return decode_routing_key(key)
    except ValueError:
        return None


class TopicTooLongError(PubSubError, ValueError):
    """A topic or pattern longer than :data:`MAX_TOPIC` UTF-8 bytes."""


def check_topic(topic: str) -> None:
    """Raise ``ValueError`` for an empty topic, :class:`TopicTooLongError` for a long one."""
    if not topic:
        raise InvalidOptionError("pubsub topic is empty")
    size = len(topic.encode("utf-8", "surrogatepass"))
    if size > MAX_TOPIC:
        raise TopicTooLongError(
            f"topic {topic[:40]!r}... is {size} bytes; the RabbitMQ backend takes at most "
            f"{MAX_TOPIC} (UTF-8)"
        )


@dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a :class:`~pondsocket.pubsub.rabbitmq.RabbitMQPubSub` (see
    ``docs/pubsub/rabbitmq.md`` for each one)."""

    exchange: str = "pondsocket"
    max_message_size: int = MiB
    queue_size: int = 10_000
    outbox_size: int = 10_000
    publish_timeout: float = 5.0
    publish_batch_size: int = 100
    publisher_confirms: bool = True
    reconnect_interval: float = 1.0
    connect_timeout: float = 10.0
    resync_timeout: float = 5.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.exchange or self.exchange.startswith("amq.") or len(self.exchange) > 255:
            raise InvalidOptionError(
                f"exchange {self.exchange!r}: 1-255 characters, not starting with 'amq.'"
            )
        for name in ("max_message_size", "queue_size", "outbox_size", "publish_batch_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("publish_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(
                    f"{name} must not be negative, not {getattr(self, name)!r}"
                )
        for name in ("reconnect_interval", "connect_timeout", "resync_timeout"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive, not {getattr(self, name)!r}")


@dataclass(slots=True)
class RabbitMQPubSubStats:
    """Counters of one :class:`~pondsocket.pubsub.rabbitmq.RabbitMQPubSub` (``.stats``)."""

    published: int = 0
    """Messages written to RabbitMQ (confirmed by it when ``publisher_confirms``)."""
    publish_errors: int = 0
    """Failed publish attempts (kept in the outbox and retried after reconnection)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError` (outbox full)."""
    received: int = 0
    """Messages delivered to this node's queue (probes excluded)."""
    filtered: int = 0
    """Received messages no pattern of this node matched (coarse or stale bindings)."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    disconnects: int = 0
    """Outages noticed (``DISCONNECTED`` notified)."""
    reconnects: int = 0
    """Outages that ended: bindings verified, ``RECONNECTED`` notified."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False, slots=True)
class Entry:
    """One pattern and the handlers sharing it (reference counted)."""

    pattern: str
    key: str
    subscriptions: list[QueuedSubscription] = field(default_factory=list)
