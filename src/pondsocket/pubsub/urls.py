"""Pick a PubSub backend from a URL, for the CLI and configuration files.

Each backend module is imported only when its scheme is used, so its client library is
needed only then (``pip install 'pondsocket-cluster[nats]'`` ...).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from pondsocket.pubsub.base import PubSub

# scheme -> (module, class, extra that installs its client)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "redis": ("pondsocket.pubsub.redis", "RedisPubSub", "redis"),
    "rediss": ("pondsocket.pubsub.redis", "RedisPubSub", "redis"),
    "redis+cluster": ("pondsocket.pubsub.redis", "RedisPubSub", "redis"),
    "rediss+cluster": ("pondsocket.pubsub.redis", "RedisPubSub", "redis"),
    "nats": ("pondsocket.pubsub.nats", "NatsPubSub", "nats"),
    "amqp": ("pondsocket.pubsub.rabbitmq", "RabbitMQPubSub", "rabbitmq"),
    "amqps": ("pondsocket.pubsub.rabbitmq", "RabbitMQPubSub", "rabbitmq"),
    "kafka": ("pondsocket.pubsub.kafka", "KafkaPubSub", "kafka"),
    "gcppubsub": ("pondsocket.pubsub.gcp", "GooglePubSub", "gcp"),
    "sns+sqs": ("pondsocket.pubsub.aws", "SnsSqsPubSub", "aws"),
}


class UnknownPubSubURL(ValueError):
    """The URL given to :func:`connect_url` has a scheme no backend serves."""


async def connect_url(url: str, **options: Any) -> PubSub:
    """Connect the backend named by the URL's scheme (``nats://host:4222`` ...)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in BACKENDS:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise UnknownPubSubURL(f"unsupported pubsub URL scheme {scheme!r}; use one of {known}")
    module_name, class_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"the {scheme}:// backend needs its client: pip install 'pondsocket-cluster[{extra}]' ({exc})"
        ) from exc
    backend = getattr(module, class_name)
    pubsub: PubSub = await backend.connect(url, **options)
    return pubsub
