"""Building blocks of the Redis backend (:mod:`pondsocket.pubsub.redis`): its errors,
options, counters, the mapping of PubSub patterns to Redis subscriptions, and the
per-handler queue and worker."""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    InvalidResponse,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import (
    PubSubError,
)
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError
from pondsocket.pubsub.delivery import QueuedSubscription

if TYPE_CHECKING:
    pass

log = logging.getLogger("pondsocket.pubsub.redis")

MiB = 1024 * 1024

Client = Redis | RedisCluster
TRANSIENT = (RedisError, RedisClusterException, OSError)
"""Exceptions a whole operation may raise that are worth retrying (see :func:`is_transient`)."""


_RETRY_REPLIES = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,  # CLUSTERDOWN, MASTERDOWN
    AskError,  # MOVED/ASK left over once redis-py's redirections are used up
    TryAgainError,
    ReadOnlyError,
    InvalidResponse,  # a garbled reply: the connection is replaced
)


def is_transient(result: object) -> bool:
    """Whether a command's error is worth retrying: connection trouble, timeouts, cluster
    reconfiguration. Other replies with an error (ACL, wrong arguments...) are final."""
    return isinstance(result, (RedisClusterException, OSError, *_RETRY_REPLIES))


_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class ShardedPatternError(PubSubError, ValueError):
    """Prefix patterns (``prefix.*``) need PSUBSCRIBE, which sharded pub/sub lacks."""


class Kind(enum.Enum):
    """How a pattern is subscribed on the broker."""

    CHANNEL = "channel"  # SUBSCRIBE: an exact topic
    PATTERN = "pattern"  # PSUBSCRIBE: a prefix pattern, as an escaped glob
    SHARD = "shard"  # SSUBSCRIBE: an exact topic in sharded mode

    @property
    def subscribe(self) -> str:
        return _COMMANDS[self][0]

    @property
    def unsubscribe(self) -> str:
        return _COMMANDS[self][1]


_COMMANDS = {
    Kind.CHANNEL: ("SUBSCRIBE", "UNSUBSCRIBE"),
    Kind.PATTERN: ("PSUBSCRIBE", "PUNSUBSCRIBE"),
    Kind.SHARD: ("SSUBSCRIBE", "SUNSUBSCRIBE"),
}
CONFIRMATIONS = {b"subscribe": Kind.CHANNEL, b"psubscribe": Kind.PATTERN, b"ssubscribe": Kind.SHARD}
UNSUBSCRIBED = {
    b"unsubscribe": Kind.CHANNEL,
    b"punsubscribe": Kind.PATTERN,
    b"sunsubscribe": Kind.SHARD,
}

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def escape_glob(text: str) -> str:
    """``text`` as a Redis glob that matches only itself (``* ? [ ] \\`` escaped)."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def wire_name(pattern: str, channel_prefix: str, sharded: bool) -> tuple[Kind, bytes]:
    """The Redis subscription for a PubSub pattern: exact topics are subscribed as they
    are; ``prefix.*`` becomes the glob ``<escaped prefix>*``."""
    if pattern.endswith(".*"):
        if sharded:
            raise ShardedPatternError(
                f"prefix pattern {pattern!r}: Redis sharded pub/sub (SSUBSCRIBE) has no "
                "pattern subscriptions; subscribe to exact topics or use sharded=False"
            )
        return Kind.PATTERN, (escape_glob(channel_prefix + pattern[:-2]) + "*").encode()
    return (Kind.SHARD if sharded else Kind.CHANNEL), (channel_prefix + pattern).encode()


@dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a :class:`~pondsocket.pubsub.redis.RedisPubSub` (see
    ``docs/pubsub/redis.md`` for each one)."""

    sharded: bool = False
    channel_prefix: str = ""
    max_message_size: int = MiB
    publish_batch_size: int = 1000
    outbox_size: int = 10_000
    publish_timeout: float = 5.0
    queue_size: int = 10_000
    health_check_interval: float = 5.0
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    connect_timeout: float = 5.0
    subscribe_timeout: float = 5.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_message_size", "publish_batch_size", "outbox_size", "queue_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("publish_timeout", "subscribe_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(
                    f"{name} must not be negative, not {getattr(self, name)!r}"
                )
        for name in ("connect_timeout", "backoff_base", "backoff_cap"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.health_check_interval < 0:
            raise InvalidOptionError("health_check_interval must be 0 (off) or positive")


@dataclass(slots=True)
class RedisPubSubStats:
    """Counters of one :class:`~pondsocket.pubsub.redis.RedisPubSub` (``pubsub.stats``)."""

    published: int = 0
    """Messages Redis accepted (its PUBLISH/SPUBLISH reply arrived)."""
    publish_batches: int = 0
    """Pipelines executed successfully; ``published / publish_batches`` is the batch size."""
    publish_errors: int = 0
    """Failed pipeline attempts (retried) plus messages Redis refused (not retried)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError` (outbox full)."""
    received: int = 0
    """Messages read from the subscriber connection(s)."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    disconnects: int = 0
    """Subscriber connections lost (one outage can count several in sharded mode)."""
    reconnects: int = 0
    """Outages that ended: every subscription restored, ``RECONNECTED`` notified."""
    reader_restarts: int = 0
    """Reader crashes (an exception other than a connection error): restarted each time."""
    health_check_failures: int = 0
    """Subscriber connections declared dead because a health-check PING got no answer."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False, slots=True)
class Entry:
    """One broker-side subscription and the handlers sharing it (reference counted)."""

    pattern: str
    kind: Kind
    wire: bytes
    subscriptions: list[QueuedSubscription] = field(default_factory=list)
    session: Any = None  # the subscriber session that holds it (redis_session.Session)
    added: asyncio.Event = field(default_factory=asyncio.Event)  # handed to its session
    ready: asyncio.Future[bool] | None = None  # set by Redis' confirmation or a lost link


def make_client(
    client_or_url: Client | str,
    cluster: bool | None,
    options: Options,
    client_options: Mapping[str, Any],
) -> tuple[Client, bool]:
    """The client to use and whether we created it (and so must close it)."""
    if isinstance(client_or_url, RedisCluster | Redis):
        if cluster is not None and cluster != isinstance(client_or_url, RedisCluster):
            raise InvalidOptionError(f"cluster={cluster} does not match the client passed in")
        return client_or_url, False
    if not isinstance(client_or_url, str):
        raise TypeError(
            "RedisPubSub.connect() takes a redis.asyncio.Redis, a redis.asyncio.RedisCluster "
            f"or a URL, not {type(client_or_url).__name__}"
        )
    url = client_or_url
    scheme, sep, rest = url.partition("://")
    if scheme in _CLUSTER_SCHEMES:
        if cluster is False:
            raise InvalidOptionError(f"cluster=False contradicts the URL scheme {scheme!r}")
        url, cluster = f"{_CLUSTER_SCHEMES[scheme]}{sep}{rest}", True
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout,
        "socket_timeout": max(options.connect_timeout, options.health_check_interval),
        "health_check_interval": options.health_check_interval,
        **client_options,
    }
    if cluster:
        return RedisCluster.from_url(url, **kwargs), True
    return Redis.from_url(url, **kwargs), True
