"""RabbitMQ PubSub backend (``pip install 'pondsocket-cluster[rabbitmq]'``), on aio-pika's
``connect_robust``.

    bus = await RabbitMQPubSub.connect("amqp://guest:guest@127.0.0.1/")
    pond = PondSocket(pubsub=bus)

Topology (durable topic exchange, one exclusive queue per node, one binding per pattern
key), the topic encoding, the outbox and reconnection are described in
``docs/pubsub/rabbitmq.md``; the building blocks are in ``rabbitmq_support`` and
``rabbitmq_publisher``.

Options, guarantees and measurements: ``docs/pubsub/rabbitmq.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
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
from pondsocket.pubsub.failures import quiet_while_connecting
from pondsocket.pubsub.rabbitmq_publisher import Publisher
from pondsocket.pubsub.rabbitmq_support import (
    PROBE_WORD,
    Entry,
    MessageTooLargeError,
    MiB,
    Options,
    PubSubUnavailableError,
    RabbitMQPubSubStats,
    TopicTooLongError,
    binding_key,
    check_topic,
    message_topic,
    routing_key,
)

__all__ = [
    "MessageTooLargeError",
    "PubSubClosedError",
    "PubSubError",
    "PubSubUnavailableError",
    "RabbitMQPubSub",
    "RabbitMQPubSubStats",
    "TopicTooLongError",
]

log = logging.getLogger("pondsocket.pubsub.rabbitmq")


class RabbitMQPubSub(PubSub):
    """A node's link to RabbitMQ. Create it with :meth:`connect`."""

    def __init__(
        self, connection: AbstractRobustConnection, *, owns_connection: bool, options: Options
    ) -> None:
        self.connection = connection
        self.options = options
        self.stats = RabbitMQPubSubStats()
        self.queue_name = f"pondsocket-node-{uuid.uuid4().hex}"
        self._owns_connection = owns_connection
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._queue: AbstractRobustQueue | None = None
        self._probe_key = f"{PROBE_WORD}.{uuid.uuid4().hex}"
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._exact: dict[str, Entry] = {}
        self._prefixes: dict[str, Entry] = {}
        self._refs: dict[str, int] = {}  # binding key -> patterns using it
        self._bound: set[str] = set()  # binding keys RabbitMQ has (as far as we know)
        self._stale: set[str] = set()  # keys to unbind once the link is back
        self._bind_lock = asyncio.Lock()
        self._publisher = Publisher(self)
        self._link_up = self._publisher.link_up  # cleared from DISCONNECTED to RECONNECTED
        self._channel_open = False
        self._connected = False
        self._down_since = 0.0
        self._closed = False
        self._resync_task: asyncio.Task[None] | None = None

    # -- construction --------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url_or_connection: str | AbstractRobustConnection,
        *,
        exchange: str = "pondsocket",
        max_message_size: int = MiB,
        queue_size: int = 10_000,
        outbox_size: int = 10_000,
        publish_timeout: float = 5.0,
        publish_batch_size: int = 100,
        publisher_confirms: bool = True,
        reconnect_interval: float = 1.0,
        connect_timeout: float = 10.0,
        resync_timeout: float = 5.0,
        close_timeout: float = 5.0,
        connection_options: Mapping[str, Any] | None = None,
    ) -> RabbitMQPubSub:
        """Connect to RabbitMQ, declare the topology and start consuming and publishing.

        ``url_or_connection`` is an ``amqp://`` / ``amqps://`` URL or a robust connection
        from ``aio_pika.connect_robust`` (it stays the caller's: :meth:`close` does not
        close it). ``connection_options`` are passed to ``connect_robust`` with a URL.
        Raises :class:`PubSubUnavailableError` when RabbitMQ cannot be reached within
        ``connect_timeout``. The other options are described in
        ``docs/pubsub/rabbitmq.md``."""
        options = Options(
            exchange=exchange,
            max_message_size=max_message_size,
            queue_size=queue_size,
            outbox_size=outbox_size,
            publish_timeout=publish_timeout,
            publish_batch_size=publish_batch_size,
            publisher_confirms=publisher_confirms,
            reconnect_interval=reconnect_interval,
            connect_timeout=connect_timeout,
            resync_timeout=resync_timeout,
            close_timeout=close_timeout,
        )
        if isinstance(url_or_connection, str):
            kwargs: dict[str, Any] = {
                "timeout": connect_timeout,
                "reconnect_interval": reconnect_interval,
                "client_properties": {"connection_name": "pondsocket"},
                **(connection_options or {}),
            }
            try:
                with quiet_while_connecting("aiormq.connection", "aio_pika.robust_connection"):
                    async with asyncio.timeout(connect_timeout):
                        connection = await aio_pika.connect_robust(url_or_connection, **kwargs)
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                raise PubSubUnavailableError(
                    f"cannot connect to RabbitMQ within {connect_timeout:g} s: {exc!r}"
                ) from exc
            owns = True
        elif isinstance(url_or_connection, AbstractRobustConnection):
            connection, owns = url_or_connection, False
        else:
            raise TypeError(
                "RabbitMQPubSub.connect() takes an amqp:// URL or a robust connection "
                f"(aio_pika.connect_robust), not {type(url_or_connection).__name__}"
            )
        bus = cls(connection, owns_connection=owns, options=options)
        try:
            await bus._start()
        except BaseException:
            await bus.close()
            raise
        return bus

    async def _start(self) -> None:
        timeout = self.options.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                channel = await self.connection.channel(
                    publisher_confirms=self.options.publisher_confirms
                )
                assert isinstance(channel, AbstractRobustChannel)
                self._channel = channel
                self._exchange = await channel.declare_exchange(
                    self.options.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
                self._queue = await channel.declare_queue(
                    self.queue_name, exclusive=True, auto_delete=True
                )
                await self._queue.bind(self._exchange, self._probe_key)
                await self._queue.consume(self._on_message, no_ack=True)
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise PubSubUnavailableError(
                f"cannot set up exchange {self.options.exchange!r} and queue on RabbitMQ "
                f"within {timeout:g} s: {exc!r}"
            ) from exc
        channel.close_callbacks.add(self._on_channel_closed)
        channel.reopen_callbacks.add(self._on_channel_reopened)
        self.connection.close_callbacks.add(self._on_channel_closed)
        self._channel_open = self._connected = True
        self._link_up.set()
        self._publisher.start()

    # -- state ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """False from ``DISCONNECTED`` until ``RECONNECTED``."""
        return self._connected

    @property
    def dropped(self) -> int:
        """Messages dropped because a handler's queue was full (also ``stats.dropped``)."""
        return self.stats.dropped

    @property
    def outbox_pending(self) -> int:
        """Messages accepted by ``publish()`` and not yet written to RabbitMQ."""
        return self._publisher.pending

    @property
    def bound_keys(self) -> frozenset[str]:
        """Binding keys of this node's subscriptions (the probe's excepted)."""
        return frozenset(self._refs)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("this RabbitMQPubSub is closed")

    def _on_channel_closed(self, _sender: object, exc: BaseException | None = None) -> None:
        self._channel_open = False
        if self._closed:
            return
        if self._resync_task is not None:
            self._resync_task.cancel()
        if not self._connected:
            return
        self._connected = False
        self._link_up.clear()
        self._down_since = time.monotonic()
        self.stats.disconnects += 1
        log.warning("RabbitMQ link lost (%r); waiting for aio-pika to reconnect", exc)
        self._notify(BusState.DISCONNECTED)

    def _on_channel_reopened(self, _sender: object) -> None:
        if self._closed:
            return
        self._channel_open = True
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = asyncio.get_running_loop().create_task(
            self._resync(), name="pondsocket-rabbitmq-resync"
        )

    async def _resync(self) -> None:
        """After a reopen: re-apply every binding, drop stale ones, probe the path through
        our queue, then report RECONNECTED. Retried until it succeeds or the link drops."""
        while not self._closed and self._channel_open:
            try:
                async with asyncio.timeout(self.options.resync_timeout):
                    async with self._bind_lock:
                        for key in list(self._refs):
                            await self._bind(key)
                        for key in list(self._stale):
                            if key not in self._refs:
                                await self._unbind(key)
                            self._stale.discard(key)
                    await self._probe()
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                log.warning("RabbitMQ resync failed (%r); retrying", exc)
                await asyncio.sleep(self.options.reconnect_interval)
                continue
            if not self._connected:
                self._connected = True
                self._link_up.set()
                self.stats.reconnects += 1
                log.info(
                    "RabbitMQ pubsub reconnected after %.2f s; %d binding(s) verified",
                    time.monotonic() - self._down_since,
                    len(self._refs),
                )
                self._notify(BusState.RECONNECTED)
            return

    async def _probe(self) -> None:
        """Publish a message to our own probe key and wait until our consumer gets it."""
        assert self._channel is not None
        token = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._probes[token] = future
        try:
            underlay = await self._channel.get_underlay_channel()
            await underlay.basic_publish(
                token.encode(), exchange=self.options.exchange, routing_key=self._probe_key
            )
            await future
        finally:
            self._probes.pop(token, None)

    # -- bindings ------------------------------------------------------------

    async def _bind(self, key: str) -> None:
        assert self._queue is not None and self._exchange is not None
        await self._queue.bind(self._exchange, key)
        self._bound.add(key)

    async def _unbind(self, key: str) -> None:
        assert self._queue is not None and self._exchange is not None
        self._bound.discard(key)
        self._stale.add(key)  # until RabbitMQ confirms
        await self._queue.unbind(self._exchange, key)
        self._stale.discard(key)

    async def _sync_key(self, key: str) -> None:
        """Make RabbitMQ's binding of ``key`` match whether a pattern still wants it. With
        the link down, or on failure, the resync after reconnection does it."""
        async with self._bind_lock:
            wanted = key in self._refs
            if wanted == (key in self._bound):
                return
            if not self._channel_open:
                if not wanted:
                    self._bound.discard(key)
                    self._stale.add(key)
                return
            try:
                async with asyncio.timeout(self.options.resync_timeout):
                    await (self._bind(key) if wanted else self._unbind(key))
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                log.warning(
                    "RabbitMQ %s of %r failed (%r); it is applied after reconnection",
                    "binding" if wanted else "unbinding",
                    key,
                    exc,
                )

    # -- subscriptions -------------------------------------------------------

    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Deliver messages matching ``pattern`` to ``handler``; returns once RabbitMQ has
        bound the key (at once while it is unreachable: the binding is then made on
        reconnection)."""
        self._check_open()
        validate_pattern(pattern)
        check_topic(pattern)
        index = self._prefixes if pattern.endswith(".*") else self._exact
        entry = index.get(pattern)
        if entry is None:
            entry = index[pattern] = Entry(pattern, binding_key(pattern))
            self._refs[entry.key] = self._refs.get(entry.key, 0) + 1
        subscription = QueuedSubscription(
            pattern,
            handler,
            queue_size=self.options.queue_size,
            on_drop=self.count_drop,
            detach=self._remove_subscription,
            name="pondsocket-rabbitmq-handler",
        )
        entry.subscriptions.append(subscription)
        await self._sync_key(entry.key)
        return subscription

    def _forget(self, entry: Entry) -> None:
        index = self._prefixes if entry.pattern.endswith(".*") else self._exact
        del index[entry.pattern]
        refs = self._refs[entry.key] - 1
        if refs:
            self._refs[entry.key] = refs
        else:
            del self._refs[entry.key]

    def _entry(self, pattern: str) -> Entry | None:
        return (self._prefixes if pattern.endswith(".*") else self._exact).get(pattern)

    def count_drop(self) -> None:
        self.stats.dropped += 1

    async def _remove_subscription(self, subscription: QueuedSubscription) -> None:
        entry = self._entry(subscription.pattern)
        if self._closed or entry is None or subscription not in entry.subscriptions:
            return
        entry.subscriptions.remove(subscription)
        if not entry.subscriptions:  # the last handler: drop the binding
            self._forget(entry)
            await self._sync_key(entry.key)

    async def unsubscribe(self, pattern: str) -> None:
        """Drop every handler of ``pattern`` and, if no other pattern shares it, its
        binding."""
        self._check_open()
        entry = self._entry(pattern)
        if entry is None:
            return
        self._forget(entry)
        subscriptions, entry.subscriptions = entry.subscriptions, []
        await self._sync_key(entry.key)
        for subscription in subscriptions:
            await subscription.stop()

    # -- consuming -----------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        if key == self._probe_key:
            future = self._probes.get(message.body.decode("ascii", "replace"))
            if future is not None and not future.done():
                future.set_result(None)
            return
        topic = message_topic(key, message.headers)
        if topic is None:
            log.debug("RabbitMQ message without a usable topic (routing key %r) ignored", key)
            return
        self.stats.received += 1
        data = message.body
        matched = False
        entry = self._exact.get(topic)
        if entry is not None:
            matched = True
            for subscription in entry.subscriptions:
                subscription.offer(topic, data)
        for pattern, entry in self._prefixes.items():
            if topic.startswith(pattern[:-2]):
                matched = True
                for subscription in entry.subscriptions:
                    subscription.offer(topic, data)
        if not matched:
            self.stats.filtered += 1

    # -- publishing ----------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Accept ``data`` for sending to ``topic``; returns before RabbitMQ has it.

        Raises :class:`MessageTooLargeError` above ``max_message_size``,
        :class:`TopicTooLongError` for a topic over 2048 UTF-8 bytes (nothing is sent),
        and :class:`PubSubUnavailableError` when the outbox stays full for
        ``publish_timeout`` seconds."""
        self._check_open()
        check_topic(topic)
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) > self.options.max_message_size:
            raise MessageTooLargeError(topic, len(data), self.options.max_message_size)
        try:
            await self._publisher.put((topic, routing_key(topic), data))
        except PubSubUnavailableError:
            self._check_open()  # closed while waiting for room: say so instead
            raise

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Send what is queued (for up to ``close_timeout`` while connected), stop every
        task, delete this node's queue and close the channel (and the connection if
        :meth:`connect` opened it). Idempotent; afterwards every other call raises
        :class:`PubSubClosedError`."""
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.close_timeout):
                if self._connected:
                    await self._publisher.drained.wait()
        self._closed = True
        if self.outbox_pending:
            log.warning("RabbitMQ pubsub closed with %d message(s) unsent", self.outbox_pending)
        await self._publisher.stop()
        if self._resync_task is not None:
            self._resync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync_task
        entries = [*self._exact.values(), *self._prefixes.values()]
        self._exact.clear()
        self._prefixes.clear()
        self._refs.clear()
        for entry in entries:
            for subscription in entry.subscriptions:
                await subscription.stop()
        self.connection.close_callbacks.discard(self._on_channel_closed)
        channel, queue = self._channel, self._queue
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.options.close_timeout):
                if queue is not None and self._channel_open and not self._owns_connection:
                    await queue.delete(if_unused=False, if_empty=False)
                if channel is not None and not channel.is_closed:
                    await channel.close()
        if self._owns_connection:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.options.close_timeout):
                    await self.connection.close()
