"""The outbox and flusher of the RabbitMQ backend (:mod:`pondsocket.pubsub.rabbitmq`):
``publish()`` enqueues, one task sends the outbox in order, a batch at a time, holds it
while the link is down, and retries what failed once the link is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

import aiormq
from aio_pika.exceptions import DeliveryError

from pondsocket.pubsub.rabbitmq_support import TOPIC_HEADER, PubSubUnavailableError

if TYPE_CHECKING:
    from pondsocket.pubsub.rabbitmq import RabbitMQPubSub

log = logging.getLogger("pondsocket.pubsub.rabbitmq")

Item = tuple[str, str, bytes]  # topic, routing key, payload


class Publisher:
    def __init__(self, owner: RabbitMQPubSub) -> None:
        self._owner = owner
        self._options = owner.options
        self._stats = owner.stats
        self._outbox: asyncio.Queue[Item] = asyncio.Queue(owner.options.outbox_size)
        self._in_flight: deque[Item] = deque()
        self.drained = asyncio.Event()  # set while nothing waits to be sent
        self.drained.set()
        self.link_up = asyncio.Event()  # the owner clears it from DISCONNECTED to RECONNECTED
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._outbox.qsize() + len(self._in_flight)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._flush(), name="pondsocket-rabbitmq-flusher"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def put(self, item: Item) -> None:
        """Queue ``item``; when the outbox is full wait up to ``publish_timeout`` for room,
        then raise :class:`PubSubUnavailableError`."""
        self.drained.clear()
        try:
            self._outbox.put_nowait(item)
            return
        except asyncio.QueueFull:
            pass
        try:
            async with asyncio.timeout(self._options.publish_timeout):
                await self._outbox.put(item)
        except TimeoutError:
            self._stats.publish_rejected += 1
            state = "connected" if self.link_up.is_set() else "unreachable"
            raise PubSubUnavailableError(
                f"cannot publish to {item[0]!r}: the outbox ({self._options.outbox_size} "
                f"messages) stayed full for {self._options.publish_timeout:g} s; RabbitMQ is "
                f"{state}"
            ) from None

    async def _flush(self) -> None:
        """Send the outbox in order, a batch at a time, holding it while the link is
        down; a message whose send failed is retried after reconnection."""
        batch = self._in_flight
        limit = self._options.publish_batch_size
        while True:
            if not batch:
                batch.append(await self._outbox.get())
            while len(batch) < limit and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            await self.link_up.wait()
            failed = await self._send(list(batch))
            batch.clear()
            if not failed and self._outbox.empty():
                self.drained.set()
            if failed:
                batch.extend(failed)
                self._stats.publish_errors += len(failed)
                # Not noticed as an outage yet? Give the robust connection a moment.
                await asyncio.sleep(min(0.1, self._options.reconnect_interval))

    async def _send(self, batch: list[Item]) -> list[Item]:
        """Publish ``batch`` (in order); returns the messages to retry."""
        channel = self._owner._channel
        assert channel is not None
        try:
            underlay = await channel.get_underlay_channel()
        except (OSError, aiormq.exceptions.AMQPError, RuntimeError):
            return batch
        exchange = self._options.exchange
        tasks = [
            asyncio.ensure_future(
                underlay.basic_publish(
                    data,
                    exchange=exchange,
                    routing_key=key,
                    properties=aiormq.spec.Basic.Properties(
                        headers={TOPIC_HEADER: topic}, delivery_mode=1
                    ),
                )
            )
            for topic, key, data in batch
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        retry: list[Item] = []
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, DeliveryError | aiormq.exceptions.DeliveryError):
                log.error("RabbitMQ refused a message on %r (%r); dropped", item[0], result)
            elif isinstance(result, asyncio.CancelledError):
                raise result
            elif isinstance(result, BaseException):
                retry.append(item)
            else:
                self._stats.published += 1
        return retry
