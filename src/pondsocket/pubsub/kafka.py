"""Kafka PubSub backend (``pip install 'pondsocket-cluster[kafka]'``), on aiokafka.

    bus = await KafkaPubSub.connect("kafka://127.0.0.1:9092")
    pond = PondSocket(pubsub=bus)

* Mapping: one Kafka topic per PondSocket namespace (``pondsocket:v1:default:...`` on
  ``pondsocket.default``), or every topic on one Kafka topic with ``kafka_topic=...``.
  The record key is the full PondSocket topic: the default partitioner keeps a topic on
  one partition, so its records stay in publish order. Missing topics are created.
* Consuming: no consumer group. Each node reads every partition of the Kafka topics its
  patterns need (one consumer per Kafka topic), from the end, and filters records on the
  key. Every node sees every message; nothing is committed.
* Publishing: aiokafka's producer batches (``linger_ms``). During an outage messages wait
  in a bounded outbox (``outbox_size``; full: :class:`PubSubUnavailableError`).
* Outages: a health check (metadata probe) every ``health_check_interval`` plus any client
  error detect them; ``BusState.DISCONNECTED`` is notified, the readers stop, and the node
  retries with back-off: topics re-created, readers back at the end, outbox sent, then
  ``BusState.RECONNECTED``.

Options, guarantees and measurements: ``docs/pubsub/kafka.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

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
from pondsocket.pubsub.kafka_reader import (
    TRANSIENT,
    Reader,
    TopicMissingError,
    create_topics,
    make_admin,
    stray_cancel,
)
from pondsocket.pubsub.kafka_support import (
    KafkaPubSubStats,
    MessageTooLargeError,
    MiB,
    Options,
    PatternSpansTopicsError,
    PubSubUnavailableError,
    TopicMapper,
    parse_url,
)
from pondsocket.pubsub.table import HandlerTable

__all__ = [
    "KafkaPubSub",
    "KafkaPubSubStats",
    "MessageTooLargeError",
    "PatternSpansTopicsError",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "TopicMapper",
]

log = logging.getLogger("pondsocket.pubsub.kafka")
ERROR_LOG_INTERVAL = 5.0


class KafkaPubSub(PubSub):
    """A node's link to a Kafka (or Kafka-compatible) cluster. Create it with :meth:`connect`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.stats = KafkaPubSubStats()
        self._handlers = HandlerTable()
        self._readers: dict[str, Reader] = {}
        self._known_topics: set[str] = set()  # exist on the broker (checked or created)
        self._outbox: deque[tuple[str, bytes, bytes]] = deque()
        self._lock = asyncio.Lock()  # readers, topic creation and recovery, one at a time
        self._wake = asyncio.Event()  # something failed: check the broker now
        self._producer: Any = None
        self._admin: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = True
        self._closed = False
        self._last_error_log = -ERROR_LOG_INTERVAL

    # -- construction --------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str = "kafka://127.0.0.1:9092",
        *,
        kafka_topic: str | None = None,
        topic_prefix: str = "",
        fallback_topic: str = "pondsocket-other",
        partitions: int = 1,
        replication_factor: int = 1,
        create_topics: bool = True,
        max_message_size: int = MiB,
        linger_ms: int = 5,
        max_batch_size: int = 64 * 1024,
        acks: int | str = 1,
        compression_type: str | None = None,
        outbox_size: int = 10_000,
        queue_size: int = 10_000,
        fetch_max_wait_ms: int = 100,
        health_check_interval: float = 1.0,
        probe_timeout: float = 3.0,
        request_timeout_ms: int = 10_000,
        backoff_base: float = 0.1,
        backoff_cap: float = 2.0,
        close_timeout: float = 5.0,
        client_id: str | None = None,
    ) -> KafkaPubSub:
        """Connect to the brokers of ``url`` (``kafka://host:9092[,host2:9092]``) and start.

        Raises :class:`PubSubUnavailableError` if no broker answers. Every option is
        described in ``docs/pubsub/kafka.md``.
        """
        options = Options(
            bootstrap_servers=parse_url(url),
            mapper=TopicMapper(kafka_topic, topic_prefix, fallback_topic),
            client_id=client_id or f"pondsocket-{uuid.uuid4().hex[:8]}",
            partitions=partitions,
            replication_factor=replication_factor,
            create_topics=create_topics,
            max_message_size=max_message_size,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            acks=acks,
            compression_type=compression_type,
            outbox_size=outbox_size,
            queue_size=queue_size,
            fetch_max_wait_ms=fetch_max_wait_ms,
            health_check_interval=health_check_interval,
            probe_timeout=probe_timeout,
            request_timeout_ms=request_timeout_ms,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            close_timeout=close_timeout,
        )
        bus = cls(options)
        try:
            await bus._start()
        except BaseException as exc:
            await bus.close()
            if isinstance(exc, TRANSIENT):
                raise PubSubUnavailableError(
                    f"cannot reach Kafka at {options.bootstrap_servers}: {exc!r}"
                ) from exc
            raise
        return bus

    async def _start(self) -> None:
        options = self.options
        self._admin = make_admin(options)
        async with asyncio.timeout(options.probe_timeout + options.request_timeout_ms / 1000):
            await self._admin.start()
            self._producer = AIOKafkaProducer(
                bootstrap_servers=options.bootstrap_servers,
                client_id=f"{options.client_id}-producer",
                acks=options.acks,
                enable_idempotence=False,
                linger_ms=options.linger_ms,
                max_batch_size=options.max_batch_size,
                max_request_size=options.fetch_size,
                compression_type=options.compression_type,
                request_timeout_ms=options.request_timeout_ms,
            )
            await self._producer.start()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="pondsocket-kafka-supervisor"
        )

    # -- PubSub --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this KafkaPubSub is closed")

    @property
    def connected(self) -> bool:
        """False from an outage's detection until every subscription is restored."""
        return self._connected

    @property
    def outbox_pending(self) -> int:
        return len(self._outbox)

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Start delivering matching messages to ``handler``. The first pattern on a Kafka
        topic creates the topic if needed and starts its reader (from the end) before
        returning; during an outage it is restored with the others."""
        self._check_open()
        validate_pattern(pattern)
        kafka_topic = self.options.mapper.for_pattern(pattern)
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.options.queue_size,
            on_drop=self.count_drop,
            detach=self._remove_subscription,
            name="pondsocket-kafka-handler",
        )
        self._handlers.add(subscription)
        try:
            async with self._lock:
                if self._connected and kafka_topic not in self._readers and not self._closed:
                    await self._start_reader(kafka_topic)
        except TRANSIENT as exc:
            self._trouble(exc)  # stays registered: the recovery starts its reader
        except BaseException:
            await subscription.cancel()
            raise
        return subscription

    async def unsubscribe(self, pattern: str) -> None:
        self._check_open()
        for subscription in self._handlers.handlers(pattern):
            await subscription.cancel()

    async def publish(self, topic: str, data: bytes) -> None:
        """Hand ``data`` to the producer (batched; returns before Kafka acknowledges).
        During an outage it waits in the outbox; a full outbox raises
        :class:`PubSubUnavailableError`. Over ``max_message_size``:
        :class:`MessageTooLargeError`."""
        self._check_open()
        key = topic.encode()
        size = len(key) + len(data)
        if size > self.options.max_message_size:
            raise MessageTooLargeError(topic, size, self.options.max_message_size)
        kafka_topic = self.options.mapper.for_topic(topic)
        if self._connected and not self._outbox:
            try:
                if kafka_topic not in self._known_topics:
                    async with self._lock:
                        await self._ensure_topics({kafka_topic})
                await self._send(kafka_topic, key, data)
                return
            except TRANSIENT as exc:
                self._trouble(exc)
        if len(self._outbox) >= self.options.outbox_size:
            self.stats.publish_rejected += 1
            raise PubSubUnavailableError(
                f"Kafka is unreachable and the outbox holds {len(self._outbox)} messages "
                f"(outbox_size); {topic!r} was not published"
            )
        self._outbox.append((kafka_topic, key, data))
        self.stats.buffered += 1

    async def close(self) -> None:
        """Stop the readers, handlers and supervisor; give the producer ``close_timeout``
        seconds to deliver what it holds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._stop_readers()
        for subscription in self._handlers.clear():
            await subscription.stop()
        if self._outbox:
            log.warning("Kafka pubsub closed with %d unsent messages", len(self._outbox))
            self._outbox.clear()
        for client in (self._producer, self._admin):
            if client is None:
                continue
            try:
                async with asyncio.timeout(self.options.close_timeout):
                    await (client.stop() if client is self._producer else client.close())
            except Exception as exc:
                log.warning("closing a Kafka client failed: %r", exc)

    # -- internals -----------------------------------------------------------

    def count_drop(self) -> None:
        self.stats.dropped += 1

    def _dispatch(self, topic: str, data: bytes) -> None:
        self.stats.received += 1
        self._handlers.offer(topic, data)

    def _patterns_topics(self) -> set[str]:
        mapper = self.options.mapper
        return {mapper.for_pattern(p) for p in self._handlers.patterns}

    async def _remove_subscription(self, subscription: QueuedSubscription) -> None:
        pattern = subscription.pattern
        if not self._handlers.remove(subscription):
            return
        kafka_topic = self.options.mapper.for_pattern(pattern)
        async with self._lock:  # the last pattern of a Kafka topic gone: stop its reader
            reader = self._readers.get(kafka_topic)
            if reader is not None and kafka_topic not in self._patterns_topics():
                del self._readers[kafka_topic]
                await reader.stop()

    async def _ensure_topics(self, names: set[str]) -> None:
        """Create what is missing of ``names`` (caller holds the lock)."""
        missing = names - self._known_topics
        if missing:
            async with asyncio.timeout(self.options.probe_timeout * 2):
                self.stats.topics_created += await create_topics(self._admin, missing, self.options)
            self._known_topics |= missing

    async def _start_reader(self, kafka_topic: str) -> None:
        """Create the topic if needed and start its reader (caller holds the lock)."""
        await self._ensure_topics({kafka_topic})
        reader = Reader(kafka_topic, self.options, self._dispatch, self._trouble)
        try:
            async with asyncio.timeout(self.options.probe_timeout * 2):
                await reader.start()
        except BaseException:
            await reader.stop()
            raise
        self._readers[kafka_topic] = reader

    async def _stop_readers(self) -> None:
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            await reader.stop()

    async def _send(self, kafka_topic: str, key: bytes, data: bytes) -> None:
        future = await self._producer.send(kafka_topic, data, key=key)
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.stats.publish_errors += 1
            return
        exc = future.exception()
        if exc is None:
            self.stats.published += 1
            return
        self.stats.publish_errors += 1
        self._trouble(exc)

    def _trouble(self, exc: BaseException) -> None:
        """A client failed: log (rate-limited) and wake the supervisor to probe now."""
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning("Kafka client error (checking the broker): %r", exc)
        self._wake.set()

    # -- health and recovery -------------------------------------------------

    async def _supervise(self) -> None:
        options = self.options
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(options.health_check_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                problem = await self._probe()
            except asyncio.CancelledError as exc:
                if not stray_cancel():
                    raise
                problem = repr(exc)
            if problem is None:
                continue
            self._connected = False
            self.stats.disconnects += 1
            down_since = time.monotonic()
            log.warning("Kafka connection lost (%s); reconnecting", problem)
            self._notify(BusState.DISCONNECTED)
            await self._recover()
            self._connected = True
            self.stats.reconnects += 1
            log.warning("Kafka connection back after %.1f s", time.monotonic() - down_since)
            self._notify(BusState.RECONNECTED)

    async def _probe(self) -> str | None:
        """None if the broker answers, has every topic this node uses and did not lose
        their records; else what is wrong."""
        try:
            async with asyncio.timeout(self.options.probe_timeout):
                existing = set(await self._admin.list_topics())
                missing = (self._known_topics | set(self._readers)) - existing
                if missing:
                    raise TopicMissingError(f"Kafka topics {sorted(missing)} are gone")
                for reader in list(self._readers.values()):
                    await reader.check()
                if set(self._readers) != self._patterns_topics():
                    raise TopicMissingError("a reader is missing")
        except TRANSIENT as exc:
            return repr(exc)
        return None

    async def _recover(self) -> None:
        """Retry with jittered back-off until topics, readers and the outbox are back."""
        delay = self.options.backoff_base
        while True:
            try:
                async with self._lock:
                    await self._restore()
                return
            except asyncio.CancelledError as exc:
                if not stray_cancel():
                    raise
                log.info("Kafka still unreachable (%r); retrying in %.2f s", exc, delay)
            except TRANSIENT as exc:
                log.info("Kafka still unreachable (%r); retrying in %.2f s", exc, delay)
            except Exception:  # a bug or an unexpected reply: keep the node alive, retry
                log.exception("restoring the Kafka subscriptions failed; retrying")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.options.backoff_cap)

    async def _restore(self) -> None:
        await self._stop_readers()
        async with asyncio.timeout(self.options.probe_timeout):
            await self._admin.list_topics()  # the broker answers (even with nothing to restore)
        self._known_topics.clear()  # a restarted broker may have lost them: check all
        topics = self._patterns_topics()
        await self._ensure_topics(topics | {t for t, _, _ in self._outbox})
        for kafka_topic in sorted(topics):
            await self._start_reader(kafka_topic)
        while self._outbox:
            kafka_topic, key, data = self._outbox[0]
            await self._send(kafka_topic, key, data)
            self._outbox.popleft()
