"""Delivery to one handler, shared by every backend: a bounded queue and a worker task,
so a slow handler never blocks the reader or the other handlers (base.py's rules)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from pondsocket.pubsub.base import MessageHandler, Subscription

log = logging.getLogger("pondsocket.pubsub")

DROP_LOG_INTERVAL = 1.0
"""At most one "dropped" log line per handler per interval: a line, not a flood."""

YIELD_AFTER = 0.005
"""Seconds a worker may run through its backlog before it lets the rest of the loop run.
Handlers rarely await, so without this a node catching up on thousands of queued
messages would starve everything else (its heartbeats, the tasks writing to clients)
until the queue is empty; with it, the work of a few milliseconds still shares a pass
of the loop, so the transports can write it out together."""


Detach = Callable[["QueuedSubscription"], Awaitable[None] | None]
"""The backend's ``detach(subscription)``: forget a cancelled subscription."""


class QueuedSubscription(Subscription):
    """One handler's subscription. ``offer`` never blocks: when the handler is
    ``queue_size`` messages behind, new messages are dropped, ``on_drop`` is called for
    each (the backend counts them) and a rate-limited warning is logged. A handler that
    raises is logged with the topic and traceback; the worker goes on.

    ``detach(subscription)`` is the backend's: called once on :meth:`cancel`, it forgets
    the subscription and releases the broker-side one if it was the last handler of its
    pattern (it may be a coroutine function).
    """

    def __init__(
        self,
        pattern: str,
        handler: MessageHandler,
        *,
        queue_size: int,
        on_drop: Callable[[], None],
        detach: Detach,
        name: str = "pondsocket-pubsub-handler",
    ) -> None:
        self.pattern = pattern
        self._detach = detach
        self._handler = handler
        self._on_drop = on_drop
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(queue_size)
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"{name}:{pattern}")
        self._dropped_unlogged = 0
        self._last_drop_log = -DROP_LOG_INTERVAL

    @property
    def backlog(self) -> int:
        """Messages waiting for the handler."""
        return self._queue.qsize()

    def offer(self, topic: str, data: bytes) -> None:
        try:
            self._queue.put_nowait((topic, data))
        except asyncio.QueueFull:
            self._on_drop()
            self._dropped_unlogged += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL:
                log.warning(
                    "pubsub handler for %r is behind (queue_size %d); dropped %d message(s), "
                    "last on %r",
                    self.pattern,
                    self._queue.maxsize,
                    self._dropped_unlogged,
                    topic,
                )
                self._last_drop_log, self._dropped_unlogged = now, 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        since = loop.time()
        while True:
            if self._queue.empty():
                topic, data = await self._queue.get()
                since = loop.time()
            else:
                topic, data = self._queue.get_nowait()
                if loop.time() - since > YIELD_AFTER:
                    await asyncio.sleep(0)
                    since = loop.time()
            try:
                await self._handler(topic, data)
            except Exception:
                log.exception("pubsub handler for %r failed on topic %r", self.pattern, topic)

    async def cancel(self) -> None:
        detached = self._detach(self)
        if detached is not None:
            await detached
        await self.stop()

    async def stop(self) -> None:
        """Stop the worker (messages still queued are discarded)."""
        self._worker.cancel()
        if asyncio.current_task() is not self._worker:  # a handler may cancel itself
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
