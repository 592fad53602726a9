"""Carries channel traffic between nodes over a :class:`~pondsocket.pubsub.PubSub`.

Local members are served by the channel itself; the relay publishes what happened as
distributed-protocol envelopes and delivers what other nodes publish to local members.
Outgoing envelopes wait in a bounded queue drained by one task, so a channel never awaits
the broker; when the queue is full the newest envelope is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from pondsocket.cluster.envelope import Envelope, EnvelopeType, InvalidEnvelope, decode_envelope
from pondsocket.cluster.topics import TopicLayout, endpoint_name
from pondsocket.core.relay import ALL_EXCEPT_SENDER, ALL_USERS, Recipients
from pondsocket.pubsub.base import PubSub, PubSubClosedError, Subscription

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel

log = logging.getLogger("pondsocket.cluster")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class ClusterRelay:
    def __init__(
        self,
        pubsub: PubSub,
        spawn: Spawn,
        *,
        node_id: str | None = None,
        layout: TopicLayout | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.pubsub = pubsub
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.layout = layout or TopicLayout()
        self._spawn = spawn
        self._queue_size = queue_size
        self._outbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._flusher: asyncio.Task[None] | None = None
        self._subscriptions: dict[int, asyncio.Task[Subscription | None]] = {}
        self.dropped = 0
        """Envelopes dropped because the outgoing queue was full."""
        self.invalid = 0
        """Received messages that were not valid envelopes."""
        self.publish_errors = 0

    def topic_of(self, channel: Channel) -> str:
        return self.layout.channel(endpoint_name(channel.endpoint_path), channel.name)

    # -- channel lifecycle ---------------------------------------------------

    def channel_opened(self, channel: Channel) -> None:
        topic = self.topic_of(channel)

        async def handler(_topic: str, data: bytes) -> None:
            self._receive(channel, data)

        async def subscribe() -> Subscription | None:
            try:
                return await self.pubsub.subscribe(topic, handler)
            except PubSubClosedError:
                return None

        self._subscriptions[id(channel)] = asyncio.get_running_loop().create_task(subscribe())

    def channel_closed(self, channel: Channel) -> None:
        task = self._subscriptions.pop(id(channel), None)
        if task is not None:
            self._spawn(self._unsubscribe(task), "cluster unsubscribe")

    @staticmethod
    async def _unsubscribe(task: asyncio.Task[Subscription | None]) -> None:
        subscription = await task
        if subscription is not None:
            with contextlib.suppress(PubSubClosedError):
                await subscription.cancel()

    # -- outgoing ------------------------------------------------------------

    def message_sent(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
    ) -> None:
        envelope = Envelope(
            EnvelopeType.USER_MESSAGE,
            self.node_id,
            endpoint_name(channel.endpoint_path),
            channel.name,
            {
                "fromUserId": sender_id,
                "event": event,
                "payload": payload,
                "requestId": request_id,
                "recipientDescriptor": recipients,
            },
        )
        self._enqueue(self.topic_of(channel), envelope.encode())

    def _enqueue(self, topic: str, data: bytes) -> None:
        if len(self._outbox) >= self._queue_size:
            self.dropped += 1
            log.warning(
                "cluster outbox full (%d); dropped a message for %s", self._queue_size, topic
            )
            return
        self._outbox.append((topic, data))
        self._drained.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        self._wakeup.set()

    async def _flush(self) -> None:
        while True:
            while self._outbox:
                topic, data = self._outbox.popleft()
                try:
                    await self.pubsub.publish(topic, data)
                except PubSubClosedError:
                    self._outbox.clear()
                    self._drained.set()
                    return
                except Exception:
                    self.publish_errors += 1
                    log.exception("publishing to %s failed", topic)
            self._drained.set()
            self._wakeup.clear()
            await self._wakeup.wait()

    # -- incoming ------------------------------------------------------------

    def _receive(self, channel: Channel, data: bytes) -> None:
        try:
            envelope = decode_envelope(data)
        except InvalidEnvelope as exc:
            self.invalid += 1
            log.warning("dropped an invalid envelope on %s: %s", channel.name, exc)
            return
        if envelope.source_node_id == self.node_id:
            return  # the broker echoes our own publications
        if envelope.type is EnvelopeType.USER_MESSAGE:
            self._deliver(channel, envelope.fields)

    def _deliver(self, channel: Channel, fields: dict[str, Any]) -> None:
        event, payload = fields.get("event"), fields.get("payload", {})
        recipients = fields.get("recipientDescriptor")
        request_id = fields.get("requestId")
        if not isinstance(event, str) or not isinstance(payload, dict):
            self.invalid += 1
            return
        valid_list = isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)
        if recipients not in (ALL_USERS, ALL_EXCEPT_SENDER) and not valid_list:
            self.invalid += 1
            return
        sender = fields.get("fromUserId")
        channel.deliver_remote(
            event,
            payload,
            cast(Recipients, recipients),
            sender if isinstance(sender, str) else "",
            request_id if isinstance(request_id, str) else None,
        )

    # -- shutdown ------------------------------------------------------------

    async def aclose(self, timeout: float = 5.0) -> None:
        """Publish what is queued (bounded by ``timeout``), then drop subscriptions."""
        try:
            if self._flusher is not None and not self._flusher.done():
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
        except TimeoutError:
            log.warning("cluster relay closed with %d unsent messages", len(self._outbox))
        if self._flusher is not None:
            self._flusher.cancel()
        for task in list(self._subscriptions.values()):
            await self._unsubscribe(task)
        self._subscriptions.clear()
