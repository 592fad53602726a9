"""The node's broker subscriptions: one per open channel's topic, one to the heartbeats.

Each subscription is a task, so a channel opens without awaiting the broker; closing a
channel, or the node, unsubscribes once that task is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pondsocket.cluster.outbox import FLUSH_STALL
from pondsocket.pubsub.base import PubSub, PubSubClosedError, Subscription

log = logging.getLogger("pondsocket.cluster")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
Handler = Callable[[str, bytes], None]
Subscribing = asyncio.Task[Subscription | None]


class Subscriptions:
    def __init__(self, pubsub: PubSub, spawn: Spawn) -> None:
        self._pubsub = pubsub
        self._spawn = spawn
        self._by_topic: dict[str, Subscribing] = {}
        self._heartbeats: Subscribing | None = None

    def subscribe_heartbeats(self, topic: str, handler: Handler) -> None:
        self._heartbeats = asyncio.get_running_loop().create_task(self._subscribe(topic, handler))

    def heartbeats_missing(self) -> str | None:
        """Why the heartbeat subscription is not in place (``None``: it is)."""
        sub = self._heartbeats
        if sub is None or not sub.done():
            return "subscribing"
        if sub.cancelled() or sub.exception() is not None or sub.result() is None:
            return "not subscribed to the cluster's heartbeats"
        return None

    def subscribe_channel(
        self, topic: str, handler: Handler, on_subscribed: Callable[[], None]
    ) -> None:
        """Subscribe to a channel's topic, then call ``on_subscribed`` (once envelopes can
        arrive, so the answers to a state request it publishes are not missed)."""

        async def subscribe_then_notify() -> Subscription | None:
            subscription = await self._subscribe(topic, handler)
            if subscription is not None:
                on_subscribed()
            return subscription

        loop = asyncio.get_running_loop()
        self._by_topic[topic] = loop.create_task(subscribe_then_notify())

    def unsubscribe_channel(self, topic: str) -> None:
        task = self._by_topic.pop(topic, None)
        if task is not None:
            self._spawn(self._unsubscribe(task), "cluster unsubscribe")

    async def aclose(self) -> None:
        """Unsubscribe from everything, within :data:`FLUSH_STALL`."""
        subscriptions = list(self._by_topic.values())
        if self._heartbeats is not None:
            subscriptions.append(self._heartbeats)
        self._by_topic.clear()
        if not subscriptions:
            return
        # Bounded like the flush: a subscribe still waiting for a broker that is gone, or
        # an unsubscribe it does not answer, must not hold the shutdown.
        unsubscribing = [asyncio.ensure_future(self._unsubscribe(s)) for s in subscriptions]
        _, late = await asyncio.wait(unsubscribing, timeout=FLUSH_STALL)
        for task in late:
            task.cancel()
        if late:
            log.warning("cluster node closed with %d subscriptions not cancelled", len(late))
        await asyncio.gather(*unsubscribing, return_exceptions=True)

    async def _subscribe(self, topic: str, handler: Handler) -> Subscription | None:
        async def deliver(received_topic: str, data: bytes) -> None:
            handler(received_topic, data)

        try:
            return await self._pubsub.subscribe(topic, deliver)
        except PubSubClosedError:
            return None
        except Exception:
            log.exception("subscribing to %s failed", topic)
            return None

    @staticmethod
    async def _unsubscribe(task: Subscribing) -> None:
        subscription = await task
        if subscription is not None:
            with contextlib.suppress(PubSubClosedError):
                await subscription.cancel()
