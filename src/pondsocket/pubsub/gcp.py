"""Google Cloud Pub/Sub backend (``pip install 'pondsocket-cluster[gcp]'``), on the official
google-cloud-pubsub client bridged to asyncio.

    bus = await GooglePubSub.connect("gcppubsub://my-project?namespace=default")
    pond = PondSocket(pubsub=bus)

* Topology: one Google topic per PondSocket namespace (``pondsocket-<namespace>``, or the
  ``topic`` option) and one subscription per node, with a unique name, created by
  :meth:`GooglePubSub.connect` and deleted by :meth:`GooglePubSub.close`. The PondSocket
  topic travels as the ``pondsocket_topic`` attribute; patterns are matched on the node.
* Order: ordering keys are not used (the emulator delivers one message per key per ack
  round trip). Each publisher numbers its messages per topic and the receiving node
  re-sequences them (:class:`~pondsocket.pubsub.gcp_support.Resequencer`).
* Threads: publish futures and streaming-pull callbacks live in the client's threads;
  callbacks hand each message to the event loop with ``call_soon_threadsafe`` and ack it.
* Outages: a failed streaming pull or health check reports ``DISCONNECTED``; the node
  retries with back-off, recreates the topic and its subscription if they vanished,
  restarts the pull and reports ``RECONNECTED``.

Options, guarantees and measurements: ``docs/pubsub/gcp.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[import-untyped]
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from pondsocket.errors import InvalidOptionError
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
from pondsocket.pubsub.gcp_support import (
    ATTR_ORIGIN,
    ATTR_SEQ,
    ATTR_TOPIC,
    ATTRIBUTE_VALUE_MAX,
    GooglePubSubStats,
    MessageTooLargeError,
    Options,
    PubSubUnavailableError,
    Resequencer,
    parse_url,
)
from pondsocket.pubsub.table import HandlerTable

__all__ = [
    "GooglePubSub",
    "GooglePubSubStats",
    "MessageTooLargeError",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
]

log = logging.getLogger("pondsocket.pubsub.gcp")
T = TypeVar("T")
_STREAM_IDLE = 300.0  # forget a publisher's per-topic sequence after this long without news


class GooglePubSub(PubSub):
    """A node's link to Google Cloud Pub/Sub. Create it with :meth:`connect`."""

    def __init__(self, options: Options, client_options: dict[str, Any]) -> None:
        self.options = options
        self.stats = GooglePubSubStats()
        self.origin = uuid.uuid4().hex[:12]
        self._loop = asyncio.get_running_loop()
        self._publisher, self._subscriber = _make_clients(options, client_options)
        project = options.project
        self.topic_path = self._publisher.topic_path(project, options.topic_name)
        self.subscription_path = self._subscriber.subscription_path(
            project, f"{options.subscription_base}-{self.origin}"
        )
        self._handlers = HandlerTable()
        self._sequences: dict[str, itertools.count[int]] = {}
        self._resequencer = Resequencer(options.reorder_window, self._dispatch, self.stats)
        self._room = asyncio.Semaphore(options.max_outstanding)
        self._outstanding: set[concurrent.futures.Future[str]] = set()
        self._pull: Any = None  # the StreamingPullFuture of the running pull
        self._pull_failed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = True
        self._closed = False

    # -- construction --------------------------------------------------------

    @classmethod
    async def connect(cls, url: str | None = None, **options: Any) -> GooglePubSub:
        """Create the topic if needed and this node's subscription, start pulling.

        ``url`` is ``gcppubsub://PROJECT?option=value&...`` (any option below, e.g.
        ``emulator=127.0.0.1:8085``, ``topic=...``, ``namespace=...``); keyword options
        override the URL's, and ``project=`` may replace the URL. ``credentials`` and
        ``client_options`` go to the Google clients. Raises
        :class:`PubSubUnavailableError` when Pub/Sub does not answer within
        ``rpc_timeout``. The options are described in ``docs/pubsub/gcp.md``."""
        merged = parse_url(url) if url else {}
        client_options: dict[str, Any] = {
            key: options.pop(key) for key in ("credentials", "client_options") if key in options
        }
        merged.update(options)
        bus = cls(Options(**merged), client_options)
        try:
            await bus._setup()
            bus._start_pull()
        except BaseException as exc:
            await bus.close()
            if isinstance(exc, gexc.GoogleAPICallError | TimeoutError):
                raise PubSubUnavailableError(f"cannot set up Google Pub/Sub: {exc}") from exc
            raise
        bus._supervisor = asyncio.get_running_loop().create_task(
            bus._supervise(), name="pondsocket-gcp-supervisor"
        )
        return bus

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """A blocking client call in a thread, bounded by ``rpc_timeout``."""
        timeout = self.options.rpc_timeout
        async with asyncio.timeout(timeout + 1):
            return await asyncio.to_thread(fn, **kwargs, timeout=timeout)

    async def _setup(self) -> bool:
        """Make sure the topic and this node's subscription exist; True if either was
        (re)created after the first time."""
        created = False
        try:
            await self._call(self._publisher.get_topic, topic=self.topic_path)
        except gexc.NotFound:
            with contextlib.suppress(gexc.AlreadyExists):  # another node was quicker
                await self._call(self._publisher.create_topic, name=self.topic_path)
                created = True
        try:
            await self._call(self._subscriber.get_subscription, subscription=self.subscription_path)
        except gexc.NotFound:
            request = {
                "name": self.subscription_path,
                "topic": self.topic_path,
                "ack_deadline_seconds": 10,
                "message_retention_duration": {"seconds": 600},
                "expiration_policy": {"ttl": {"seconds": int(self.options.subscription_ttl)}},
            }
            with contextlib.suppress(gexc.AlreadyExists):
                await self._call(self._subscriber.create_subscription, request=request)
                created = True
        return created

    # -- receiving -----------------------------------------------------------

    def _start_pull(self) -> None:
        self._pull_failed.clear()
        flow = pubsub_v1.types.FlowControl(max_messages=self.options.flow_max_messages)
        future = self._subscriber.subscribe(
            self.subscription_path, self._on_message, flow_control=flow
        )
        future.add_done_callback(self._on_pull_done)
        self._pull = future

    def _on_message(self, message: Any) -> None:
        """In a client thread: hand the message to the loop, then ack it."""
        attributes = message.attributes
        topic = attributes.get(ATTR_TOPIC)
        item = (topic, attributes.get(ATTR_ORIGIN), attributes.get(ATTR_SEQ), message.data)
        try:
            self._loop.call_soon_threadsafe(self._receive, *item)
        except RuntimeError:  # the loop is closed: let another delivery have it
            message.nack()
            return
        message.ack()

    def _on_pull_done(self, future: Any) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._pull_ended, future)

    def _pull_ended(self, future: Any) -> None:
        # A pull already stopped or replaced may end late (its thread outlives the stop
        # timeout): that must not read as the current pull failing, or a healthy link
        # would go through a second, spurious outage right after reconnecting.
        if future is self._pull:
            self._pull_failed.set()

    def _receive(self, topic: str | None, origin: str | None, seq: str | None, data: bytes) -> None:
        if self._closed or not topic:
            return
        self.stats.received += 1
        if origin and seq and seq.isdigit():
            self._resequencer.accept(origin, int(seq), topic, data)
        else:  # published by something else than a GooglePubSub: as it comes
            self._dispatch(topic, data)

    def _dispatch(self, topic: str, data: bytes) -> None:
        self._handlers.offer(topic, data)

    # -- outages -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """False from ``DISCONNECTED`` until ``RECONNECTED``."""
        return self._connected

    async def _healthy(self) -> None:
        """Return when the pull failed or a health check did not get an answer."""
        interval = self.options.health_check_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._pull_failed.wait()
                pull = self._pull
                error = pull.exception() if pull is not None and pull.done() else None
                raise PubSubError(f"the streaming pull ended: {error!r}")
            self._resequencer.sweep(_STREAM_IDLE)
            # No client-side retries: a refused connection must count now, not in rpc_timeout.
            await self._call(
                self._subscriber.get_subscription, subscription=self.subscription_path, retry=None
            )

    async def _supervise(self) -> None:
        while not self._closed:
            try:
                await self._healthy()
            except (gexc.GoogleAPICallError, PubSubError, TimeoutError) as exc:
                await self._outage(exc)

    async def _outage(self, exc: BaseException) -> None:
        self._connected = False
        self.stats.disconnects += 1
        down_since = time.monotonic()
        log.warning("Google Pub/Sub link lost (%s: %s); reconnecting", type(exc).__name__, exc)
        self._notify(BusState.DISCONNECTED)
        await self._stop_pull()
        for attempt in itertools.count():
            delay = min(self.options.backoff_cap, self.options.backoff_base * 2**attempt)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                if await self._setup():
                    self.stats.recreated += 1
                    log.info("Google Pub/Sub topic or subscription recreated")
                self._start_pull()
                break
            except (gexc.GoogleAPICallError, TimeoutError) as retry_exc:
                log.debug("Google Pub/Sub still unreachable: %s", retry_exc)
        self._connected = True
        self.stats.reconnects += 1
        log.info("Google Pub/Sub reconnected after %.2f s", time.monotonic() - down_since)
        self._notify(BusState.RECONNECTED)

    async def _stop_pull(self) -> None:
        pull, self._pull = self._pull, None
        if pull is None:
            return
        pull.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.options.close_timeout):
                await asyncio.to_thread(pull.result)

    # -- subscriptions -------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this GooglePubSub is closed")

    @property
    def dropped(self) -> int:
        """Messages dropped because a handler's queue was full (also ``stats.dropped``)."""
        return self.stats.dropped

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Deliver messages matching ``pattern`` to ``handler``. The node's Pub/Sub
        subscription exists from :meth:`connect` on, so this is immediate."""
        self._check_open()
        validate_pattern(pattern)
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.options.queue_size,
            on_drop=self.count_drop,
            detach=self._remove_subscription,
            name="pondsocket-gcp-handler",
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

    @property
    def outstanding(self) -> int:
        """Messages handed to the client and not yet confirmed by Pub/Sub."""
        return len(self._outstanding)

    async def publish(self, topic: str, data: bytes) -> None:
        """Hand ``data`` to the client's batcher; returns before Pub/Sub confirms it.

        Raises :class:`MessageTooLargeError` above ``max_message_size``, ``ValueError``
        for a topic longer than 1024 UTF-8 bytes, and :class:`PubSubUnavailableError`
        when ``max_outstanding`` publishes stay unconfirmed for ``publish_timeout``."""
        self._check_open()
        if not topic:
            raise InvalidOptionError("pubsub topic is empty")
        if len(topic.encode()) > ATTRIBUTE_VALUE_MAX:
            raise InvalidOptionError(f"topic {topic[:50]!r}... is longer than 1024 bytes")
        data = bytes(data)
        if len(data) > self.options.max_message_size:
            raise MessageTooLargeError(topic, len(data), self.options.max_message_size)
        try:
            async with asyncio.timeout(self.options.publish_timeout):
                await self._room.acquire()
        except TimeoutError:
            self._check_open()
            self.stats.publish_rejected += 1
            raise PubSubUnavailableError(
                f"{self.options.max_outstanding} publishes unconfirmed for "
                f"{self.options.publish_timeout:g} s"
            ) from None
        seq = next(self._sequences.setdefault(topic, itertools.count()))
        attributes = {ATTR_TOPIC: topic, ATTR_ORIGIN: self.origin, ATTR_SEQ: str(seq)}
        try:
            future = self._publisher.publish(self.topic_path, data, **attributes)
        except BaseException:
            self._room.release()
            raise
        self._outstanding.add(future)
        future.add_done_callback(self._on_published)
        await asyncio.sleep(0)  # a tight publishing loop must not starve the handlers

    def _on_published(self, future: concurrent.futures.Future[str]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(self._published, future)

    def _published(self, future: concurrent.futures.Future[str]) -> None:
        self._outstanding.discard(future)
        self._room.release()
        error = future.exception()
        if error is None:
            self.stats.published += 1
            return
        self.stats.publish_errors += 1
        log.error("Google Pub/Sub publish failed: %s: %s", type(error).__name__, error)

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Wait (up to ``close_timeout``) for outstanding publishes, stop pulling, delete
        this node's subscription, close the clients. Idempotent; afterwards every other
        call raises :class:`PubSubClosedError`."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        timeout = self.options.close_timeout
        pending = [asyncio.wrap_future(f) for f in self._outstanding]
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            if late:
                log.warning("%d message(s) not confirmed by Google Pub/Sub at close", len(late))
        await self._stop_pull()
        try:
            await self._call(
                self._subscriber.delete_subscription, subscription=self.subscription_path
            )
        except (gexc.GoogleAPICallError, TimeoutError) as exc:
            if not isinstance(exc, gexc.NotFound):
                log.warning("could not delete subscription %s: %s", self.subscription_path, exc)
        self._resequencer.clear()
        for subscription in self._handlers.clear():
            await subscription.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await asyncio.to_thread(self._publisher.stop)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._subscriber.close)


def _make_clients(options: Options, client_options: dict[str, Any]) -> tuple[Any, Any]:
    batch = pubsub_v1.types.BatchSettings(
        max_messages=options.batch_max_messages,
        max_bytes=max(options.batch_max_bytes, options.max_message_size + 8192),
        max_latency=options.batch_max_latency,
    )
    if not options.emulator:
        return (
            pubsub_v1.PublisherClient(batch_settings=batch, **client_options),
            pubsub_v1.SubscriberClient(**client_options),
        )
    # The emulator speaks plain gRPC; reconnect quickly once it is back.
    reconnect_ms = int(options.backoff_cap * 1000)
    channel_options = [
        ("grpc.initial_reconnect_backoff_ms", min(100, reconnect_ms)),
        ("grpc.min_reconnect_backoff_ms", min(100, reconnect_ms)),
        ("grpc.max_reconnect_backoff_ms", reconnect_ms),
        ("grpc.max_send_message_length", 20 * 1024 * 1024),
        ("grpc.max_receive_message_length", 20 * 1024 * 1024),
    ]
    publisher = pubsub_v1.PublisherClient(
        batch_settings=batch,
        transport=PublisherGrpcTransport(
            channel=grpc.insecure_channel(options.emulator, options=channel_options),
        ),
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(
            channel=grpc.insecure_channel(options.emulator, options=channel_options),
        ),
    )
    return publisher, subscriber
