"""Building blocks of the SNS/SQS backend (:mod:`pondsocket.pubsub.aws`): errors, options,
counters, the URL form, the wire encoding of a message and the per-handler queue."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
)

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.base import MessageTooLargeError as MessageTooLargeError
from pondsocket.pubsub.base import PubSubUnavailableError as PubSubUnavailableError

if TYPE_CHECKING:
    pass

log = logging.getLogger("pondsocket.pubsub.aws")

SNS_LIMIT = 256 * 1024
"""Largest SNS message (body and attributes), and largest PublishBatch request payload."""
TOPIC_ATTR = "pondsocket_topic"
TOPIC_B64_ATTR = "pondsocket_topic_b64"
ENCODING_ATTR = "pondsocket_enc"
TRANSIENT = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)
"""Errors of an AWS call that put the link in doubt: the backend re-checks its topology."""

# Characters SNS/SQS accept in a message body or a String attribute.
_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_MISSING_CODES = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NotFound",
    "NotFoundException",
    "ResourceNotFoundException",
}


def is_missing(exc: BaseException) -> bool:
    """Whether an AWS error says the topic, queue or subscription does not exist."""
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    return error.get("Code") in _MISSING_CODES or error.get("QueryErrorCode") in _MISSING_CODES


def is_sender_fault(exc: BaseException) -> bool:
    """A refusal that retrying cannot fix (bad parameter, access denied...)."""
    if not isinstance(exc, ClientError) or is_missing(exc):
        return False
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return (
        error.get("Type") == "Sender" and status != 429 and "Throttl" not in error.get("Code", "")
    )


@dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a :class:`~pondsocket.pubsub.aws.SnsSqsPubSub` (see
    ``docs/pubsub/aws.md``)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    topic: str = "pondsocket"
    queue_prefix: str = "pondsocket-"
    max_message_size: int = SNS_LIMIT
    publish_batch_size: int = 10
    publish_concurrency: int = 4
    outbox_size: int = 10_000
    publish_timeout: float = 5.0
    queue_size: int = 10_000
    wait_time_seconds: int = 20
    visibility_timeout: int = 30
    message_retention: int = 300
    backoff_base: float = 0.1
    backoff_cap: float = 2.0
    connect_timeout: float = 10.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.topic):
            raise InvalidOptionError(
                f"topic {self.topic!r}: 1-256 characters among A-Z a-z 0-9 _ -"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,40}", self.queue_prefix):
            raise InvalidOptionError(
                f"queue_prefix {self.queue_prefix!r}: up to 40 of A-Z a-z 0-9 _ -"
            )
        if not 1 <= self.max_message_size <= SNS_LIMIT:
            raise InvalidOptionError(f"max_message_size must be between 1 and {SNS_LIMIT}")
        if not 1 <= self.publish_batch_size <= 10:
            raise InvalidOptionError(
                "publish_batch_size must be between 1 and 10 (the SNS batch limit)"
            )
        if not 0 <= self.wait_time_seconds <= 20:
            raise InvalidOptionError("wait_time_seconds must be between 0 and 20")
        if not 60 <= self.message_retention <= 1_209_600:
            raise InvalidOptionError("message_retention must be between 60 and 1209600 seconds")
        if not 0 <= self.visibility_timeout <= 43_200:
            raise InvalidOptionError("visibility_timeout must be between 0 and 43200 seconds")
        for name in ("publish_concurrency", "outbox_size", "queue_size"):
            if getattr(self, name) < 1:
                raise InvalidOptionError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("publish_timeout", "close_timeout"):
            if getattr(self, name) < 0:
                raise InvalidOptionError(f"{name} must not be negative")
        for name in ("backoff_base", "backoff_cap", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise InvalidOptionError(f"{name} must be positive")


_URL_OPTIONS = {f.name: f.type for f in fields(Options) if f.name != "region"}


def parse_url(url: str) -> dict[str, Any]:
    """Options from ``sns+sqs://REGION?endpoint=URL&topic=NAME&<option>=<value>...``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sns+sqs":
        raise InvalidOptionError(f"not an sns+sqs:// URL: {url!r}")
    found: dict[str, Any] = {}
    if parts.hostname:
        found["region"] = parts.hostname
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = "endpoint_url" if key in ("endpoint", "endpoint_url") else key
        kind = _URL_OPTIONS.get(name)
        if kind is None:
            raise InvalidOptionError(f"unknown sns+sqs:// URL option {key!r}")
        if "int" in str(kind):
            found[name] = int(value)
        elif "float" in str(kind):
            found[name] = float(value)
        else:
            found[name] = value
    return found


def encode(topic: str, data: bytes) -> tuple[str, dict[str, Any], int]:
    """The SNS body and attributes of a message, and its size as SNS counts it. UTF-8 text
    SNS accepts goes as it is; other payloads (binary, empty) are base64-encoded."""
    attributes: dict[str, Any] = {}
    if _UNSAFE.search(topic):
        value = base64.b64encode(topic.encode("utf-8", "surrogatepass")).decode()
        attributes[TOPIC_B64_ATTR] = {"DataType": "String", "StringValue": value}
    else:
        attributes[TOPIC_ATTR] = {"DataType": "String", "StringValue": topic}
    body: str | None = None
    if data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not _UNSAFE.search(text):
                body = text
    if body is None:
        body = base64.b64encode(data).decode() or "-"
        attributes[ENCODING_ATTR] = {"DataType": "String", "StringValue": "b64"}
    size = len(body.encode())
    for name, attr in attributes.items():
        size += len(name) + len(attr["DataType"]) + len(attr["StringValue"].encode())
    return body, attributes, size


def decode(message: dict[str, Any]) -> tuple[str, bytes] | None:
    """(topic, payload) of a received SQS message; None if it is not one of ours."""
    attributes = message.get("MessageAttributes") or {}
    body: str = message.get("Body", "")
    if TOPIC_ATTR in attributes:
        topic = attributes[TOPIC_ATTR].get("StringValue", "")
    elif TOPIC_B64_ATTR in attributes:
        raw = base64.b64decode(attributes[TOPIC_B64_ATTR].get("StringValue", ""))
        topic = raw.decode("utf-8", "surrogatepass")
    else:
        return None
    if ENCODING_ATTR in attributes:
        return topic, b"" if body == "-" else base64.b64decode(body)
    return topic, body.encode()


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """The SQS queue policy letting the SNS topic (and only it) send to the queue."""
    statement = {
        "Sid": "pondsocket-sns",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@dataclass(slots=True)
class SnsSqsStats:
    """Counters of one :class:`~pondsocket.pubsub.aws.SnsSqsPubSub` (``pubsub.stats``)."""

    published: int = 0
    """Messages SNS accepted."""
    publish_batches: int = 0
    """Successful Publish/PublishBatch calls."""
    publish_errors: int = 0
    """Failed publish calls (retried) plus messages SNS refused (not retried)."""
    publish_rejected: int = 0
    """``publish()`` calls that raised :class:`PubSubUnavailableError` (outbox full)."""
    received: int = 0
    """Messages read from this node's queue."""
    receive_calls: int = 0
    """ReceiveMessage calls that returned (with or without messages)."""
    deleted: int = 0
    """Messages deleted from the queue after being handed to the handlers' queues."""
    foreign: int = 0
    """Messages in the queue without a PondSocket topic attribute (deleted, ignored)."""
    dropped: int = 0
    """Messages dropped because a handler's queue was full."""
    disconnects: int = 0
    """Outages noticed: ``DISCONNECTED`` notified."""
    reconnects: int = 0
    """Outages that ended: topology checked or recreated, ``RECONNECTED`` notified."""
    recreated: int = 0
    """Topics, queues or subscriptions found missing and created again."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
