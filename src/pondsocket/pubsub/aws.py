"""Amazon SNS + SQS PubSub backend (``pip install 'pondsocket-cluster[aws]'``), on aiobotocore.

    bus = await SnsSqsPubSub.connect("sns+sqs://us-east-1?topic=pondsocket-chat")
    pond = PondSocket(pubsub=bus)

* Topology: one SNS topic shared by the nodes of a cluster (``topic``, created if
  missing); one SQS queue per node (``<queue_prefix><random>``), created at connect,
  subscribed to the topic with raw message delivery, and deleted with its subscription by
  :meth:`SnsSqsPubSub.close`. The PondSocket topic travels as a message attribute; each
  node filters what it receives by its own patterns.
* Receiving: one task long-polls the queue (``WaitTimeSeconds`` up to 20, 10 messages a
  call), hands each message to the bounded queue of every matching handler, then deletes
  the batch (``DeleteMessageBatch``) in the background.
* Publishing: ``publish()`` queues the message (bounded by ``outbox_size``) and returns;
  lanes send ``PublishBatch`` calls, one topic always through the same lane.
* Outages: a failed call makes the backend notify ``BusState.DISCONNECTED``, then check
  the topic, queue and subscription with jittered back-off, recreating whatever vanished,
  and notify ``BusState.RECONNECTED``.

Options, guarantees and measurements: ``docs/pubsub/aws.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]

from pondsocket.errors import InvalidOptionError
from pondsocket.pubsub.aws_publisher import Publisher, backoff
from pondsocket.pubsub.aws_support import (
    TRANSIENT,
    MessageTooLargeError,
    Options,
    PubSubUnavailableError,
    SnsSqsStats,
    decode,
    encode,
    is_missing,
    parse_url,
    queue_policy,
)
from pondsocket.pubsub.base import (
    BusState,
    MessageHandler,
    PubSub,
    PubSubClosedError,
    PubSubError,
    Subscription,
    validate_pattern,
)
from pondsocket.pubsub.delivery import QueuedSubscription
from pondsocket.pubsub.table import HandlerTable

__all__ = [
    "MessageTooLargeError",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "SnsSqsPubSub",
    "SnsSqsStats",
]

log = logging.getLogger("pondsocket.pubsub.aws")

MAX_PENDING_DELETES = 4


class SnsSqsPubSub(PubSub):
    """A node's link to an SNS topic through its own SQS queue. Create it with
    :meth:`connect`."""

    def __init__(self, sns: Any, sqs: Any, stack: contextlib.AsyncExitStack, options: Options):
        self.sns = sns
        self.sqs = sqs
        self.options = options
        self.stats = SnsSqsStats()
        self.topic_arn = ""
        self.queue_url = ""
        self.queue_arn = ""
        self.subscription_arn = ""
        self._stack = stack
        self._handlers = HandlerTable()
        self._link_up = asyncio.Event()
        self._link_up.set()
        self._publisher = Publisher(
            sns, lambda: self.topic_arn, options, self.stats, self._link_up, self._trouble
        )
        self._receiver: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._deletes: set[asyncio.Task[None]] = set()
        self._down_since = 0.0
        self._closed = False

    # -- construction --------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        session: AioSession | None = None,
        client_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> SnsSqsPubSub:
        """Create (or find) the SNS topic, create this node's queue, subscribe it, and start
        receiving. ``url`` is ``sns+sqs://REGION?endpoint=URL&topic=NAME&...`` (any option
        below can be given in the query); keyword ``options`` override the URL. Credentials
        come from the usual AWS chain (environment, profile, instance role), or from
        ``client_options`` (passed to ``create_client``, with ``session`` an aiobotocore
        session of your own). Raises :class:`PubSubUnavailableError` when this cannot be done
        within ``connect_timeout``. Options: ``docs/pubsub/aws.md``."""
        merged = {**(parse_url(url) if url else {}), **options}
        settings = Options(**merged)
        config = AioConfig(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.wait_time_seconds + 10,
            retries={"mode": "standard", "total_max_attempts": 2},
            max_pool_connections=settings.publish_concurrency + MAX_PENDING_DELETES + 2,
        )
        kwargs: dict[str, Any] = {
            "region_name": settings.region,
            "endpoint_url": settings.endpoint_url,
            "config": config,
            **(client_options or {}),
        }
        session = session or get_session()
        stack = contextlib.AsyncExitStack()
        try:
            sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
            sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
        except BaseException:
            await stack.aclose()
            raise
        bus = cls(sns, sqs, stack, settings)
        try:
            async with asyncio.timeout(settings.connect_timeout):
                await bus._ensure_topology()
        except (TimeoutError, *TRANSIENT) as exc:
            await bus.close()
            raise PubSubUnavailableError(
                f"cannot set up SNS topic {settings.topic!r} and an SQS queue in "
                f"{settings.region} within {settings.connect_timeout:g} s: {exc}"
            ) from exc
        except BaseException:
            await bus.close()
            raise
        bus._publisher.start()
        bus._receiver = asyncio.get_running_loop().create_task(
            bus._receive_loop(), name="pondsocket-aws-receiver"
        )
        return bus

    async def _ensure_topology(self) -> None:
        """Make sure the topic, this node's queue, its policy and its subscription exist;
        create whatever is missing. Idempotent: also the health check after an outage."""
        reply = await self.sns.create_topic(Name=self.options.topic)  # returns an existing one
        topic_changed = reply["TopicArn"] != self.topic_arn
        self.topic_arn = reply["TopicArn"]
        queue_new = False
        if self.queue_url:
            try:
                await self.sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
                )
            except TRANSIENT as exc:
                if not is_missing(exc):
                    raise
                log.warning("SQS queue %s vanished; creating a new one", self.queue_url)
                self.stats.recreated += 1
                self.queue_url = ""
        if not self.queue_url:
            await self._create_queue()
            queue_new = True
        if self.subscription_arn and not (queue_new or topic_changed):
            try:
                await self.sns.get_subscription_attributes(SubscriptionArn=self.subscription_arn)
            except TRANSIENT as exc:
                if not is_missing(exc):
                    raise
                log.warning("SNS subscription of %s vanished; subscribing again", self.queue_url)
                self.stats.recreated += 1
                self.subscription_arn = ""
        elif self.subscription_arn:  # it points at a queue or topic that is gone
            with contextlib.suppress(*TRANSIENT):
                await self.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
            self.subscription_arn = ""
        if not self.subscription_arn:
            await self._set_queue_policy()
            reply = await self.sns.subscribe(
                TopicArn=self.topic_arn,
                Protocol="sqs",
                Endpoint=self.queue_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
            self.subscription_arn = reply["SubscriptionArn"]

    async def _create_queue(self) -> None:
        name = f"{self.options.queue_prefix}{uuid.uuid4().hex}"
        reply = await self.sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(self.options.visibility_timeout),
                "MessageRetentionPeriod": str(self.options.message_retention),
                "ReceiveMessageWaitTimeSeconds": str(self.options.wait_time_seconds),
            },
        )
        self.queue_url = reply["QueueUrl"]
        attributes = await self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )
        self.queue_arn = attributes["Attributes"]["QueueArn"]
        log.info("SQS queue %s created for SNS topic %s", self.queue_url, self.topic_arn)

    async def _set_queue_policy(self) -> None:
        policy = queue_policy(self.queue_arn, self.topic_arn)
        await self.sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"Policy": policy})

    # -- state ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """False from ``DISCONNECTED`` until ``RECONNECTED``."""
        return self._link_up.is_set()

    @property
    def dropped(self) -> int:
        """Messages dropped because a handler's queue was full (also ``stats.dropped``)."""
        return self.stats.dropped

    @property
    def outbox_pending(self) -> int:
        """Messages accepted by ``publish()`` and not yet taken by SNS."""
        return self._publisher.pending

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this SnsSqsPubSub is closed")

    def _trouble(self, exc: BaseException, doing: str) -> None:
        """A call failed: report the outage once and start checking the topology."""
        if self._closed:
            return
        if self._link_up.is_set():
            self._link_up.clear()
            self._down_since = time.monotonic()
            self.stats.disconnects += 1
            log.warning(
                "SNS/SQS failed while %s (%s: %s); recovering", doing, type(exc).__name__, exc
            )
            self._notify(BusState.DISCONNECTED)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(), name="pondsocket-aws-recovery"
            )

    async def _recover(self) -> None:
        attempt = 0
        while not self._closed:
            attempt += 1
            await asyncio.sleep(backoff(self.options, attempt))
            try:
                await self._ensure_topology()
            except TRANSIENT as exc:
                log.debug("SNS/SQS still unavailable (attempt %d): %s", attempt, exc)
                continue
            except Exception:
                log.exception("checking the SNS/SQS topology failed (attempt %d)", attempt)
                continue
            if self._closed:
                return
            self.stats.reconnects += 1
            self._link_up.set()
            log.info(
                "SNS/SQS reconnected after %.2f s (%d attempt(s))",
                time.monotonic() - self._down_since,
                attempt,
            )
            self._notify(BusState.RECONNECTED)
            return

    # -- receiving -----------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            await self._link_up.wait()
            queue_url = self.queue_url
            try:
                reply = await self.sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.options.wait_time_seconds,
                    MessageAttributeNames=["All"],
                )
            except TRANSIENT as exc:
                self._trouble(exc, "receiving")
                continue
            except Exception as exc:  # a bug must not end the receiver silently
                log.exception("SQS receiver failed; recovering")
                self._trouble(exc, "receiving")
                continue
            self.stats.receive_calls += 1
            messages = reply.get("Messages") or []
            if not messages:
                continue
            self.stats.received += len(messages)
            for message in messages:
                self._dispatch(message)
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            while len(self._deletes) >= MAX_PENDING_DELETES:
                await asyncio.wait(self._deletes, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.get_running_loop().create_task(
                self._delete(queue_url, entries), name="pondsocket-aws-delete"
            )
            self._deletes.add(task)
            task.add_done_callback(self._deletes.discard)

    def _dispatch(self, message: dict[str, Any]) -> None:
        try:
            decoded = decode(message)
        except ValueError:
            decoded = None
        if decoded is None:
            self.stats.foreign += 1
            log.debug("ignoring an SQS message that is not PondSocket's: %.200r", message)
            return
        topic, data = decoded
        self._handlers.offer(topic, data)

    async def _delete(self, queue_url: str, entries: list[dict[str, str]]) -> None:
        try:
            reply = await self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except TRANSIENT as exc:
            log.debug(
                "deleting %d SQS message(s) failed (%s): they may come again", len(entries), exc
            )
            return
        self.stats.deleted += len(reply.get("Successful") or [])

    # -- subscriptions -------------------------------------------------------

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Deliver messages matching ``pattern`` to ``handler``. The node's queue already
        receives every message of the topic, so this takes effect at once."""
        self._check_open()
        validate_pattern(pattern)
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.options.queue_size,
            on_drop=self.count_drop,
            detach=self._remove_subscription,
            name="pondsocket-aws-handler",
        )
        self._handlers.add(subscription)
        return subscription

    def count_drop(self) -> None:
        self.stats.dropped += 1

    def _remove_subscription(self, subscription: QueuedSubscription) -> None:
        self._handlers.remove(subscription)

    async def unsubscribe(self, pattern: str) -> None:
        """Drop every handler of ``pattern``."""
        self._check_open()
        for subscription in self._handlers.pop(pattern):
            await subscription.stop()

    # -- publishing ----------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Accept ``data`` for sending to ``topic``; returns before SNS has it.

        Raises :class:`MessageTooLargeError` when the encoded message exceeds
        ``max_message_size`` (nothing is sent) and :class:`PubSubUnavailableError` when
        ``outbox_size`` messages have been waiting for ``publish_timeout`` seconds."""
        self._check_open()
        if not topic:
            raise InvalidOptionError("pubsub topic is empty")
        if not isinstance(data, bytes):
            data = bytes(data)
        body, attributes, size = encode(topic, data)
        if size > self.options.max_message_size:
            raise MessageTooLargeError(
                topic,
                size,
                self.options.max_message_size,
                f" once encoded for SNS (payload {len(data)} bytes)",
            )
        try:
            await self._publisher.put((topic, body, attributes, size))
        except PubSubUnavailableError:
            self._check_open()
            raise

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Publish what is queued (for up to ``close_timeout``), stop receiving, delete this
        node's subscription and queue (the topic stays: other nodes use it), and close the
        clients. Idempotent; afterwards every other call raises :class:`PubSubClosedError`."""
        if self._closed:
            return
        self._closed = True
        await self._publisher.close()
        tasks = [t for t in (self._receiver, self._recovery) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._deletes:
            await asyncio.wait(list(self._deletes), timeout=self.options.close_timeout)
        try:
            async with asyncio.timeout(self.options.close_timeout):
                await self._teardown()
        except (TimeoutError, *TRANSIENT) as exc:
            log.warning(
                "could not delete SQS queue %s and its subscription (%s); delete it by hand",
                self.queue_url,
                exc,
            )
        for subscription in self._handlers.clear():
            await subscription.stop()
        await self._stack.aclose()

    async def _teardown(self) -> None:
        if self.subscription_arn:
            with contextlib.suppress(*TRANSIENT):  # gone with the topic, or deleted already
                await self.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
            self.subscription_arn = ""
        if self.queue_url:
            try:
                await self.sqs.delete_queue(QueueUrl=self.queue_url)
            except TRANSIENT as exc:
                if not is_missing(exc):
                    raise
            log.info("SQS queue %s deleted", self.queue_url)
