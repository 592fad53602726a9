"""The publishing side of the Redis backend: a bounded outbox drained by one flusher task
in ``pipeline(transaction=False)`` batches, so publishing costs no round trip per
message. A batch that fails on a connection error is kept and retried whole with
jittered back-off; while the subscriber side is down the flusher holds the outbox, so
what was published during an outage goes out once the subscriptions are back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.backoff import ExponentialWithJitterBackoff

from pondsocket.pubsub.redis_support import (
    TRANSIENT,
    Client,
    MiB,
    Options,
    PubSubUnavailableError,
    RedisPubSubStats,
    is_transient,
)

log = logging.getLogger("pondsocket.pubsub.redis")

BATCH_BYTES = MiB  # a pipeline stops growing past this much payload
CLOSE_STALL = 1.0
"""At close, seconds one pipeline may take before the rest is given up on (Redis hangs);
while Redis is known to be failing (the last attempt failed) close does not wait."""
_POLL = 0.05

Item = tuple[bytes, bytes]  # (channel as sent to Redis, payload)


class Publisher:
    def __init__(self, client: Client, options: Options, stats: RedisPubSubStats) -> None:
        self.client = client
        self.options = options
        self.stats = stats
        self.link_up = asyncio.Event()
        """Set while the subscriber side is connected; the flusher waits for it."""
        self.link_up.set()
        self._outbox: asyncio.Queue[Item] = asyncio.Queue(options.outbox_size)
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None
        self._sending_since: float | None = None  # loop time the pipeline under way began
        self._failing = False  # the last attempt failed; the flusher is backing off

    @property
    def pending(self) -> int:
        """Messages accepted and not yet confirmed by Redis."""
        return self._outbox.qsize() + self._in_flight

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._flush_loop(), name="pondsocket-redis-flusher"
        )

    async def put(self, topic: str, item: Item) -> None:
        """Queue ``item``; wait up to ``publish_timeout`` for room, then raise."""
        try:
            self._outbox.put_nowait(item)
            return
        except asyncio.QueueFull:
            pass
        try:
            async with asyncio.timeout(self.options.publish_timeout):
                await self._outbox.put(item)
        except TimeoutError:
            self.stats.publish_rejected += 1
            reason = (
                "Redis is unreachable" if not self.link_up.is_set() else "Redis is not keeping up"
            )
            raise PubSubUnavailableError(
                f"cannot publish on {topic!r}: the outbox has been full "
                f"({self.options.outbox_size} messages) for {self.options.publish_timeout:g} s; "
                f"{reason}"
            ) from None

    async def _flush_loop(self) -> None:
        limit = self.options.publish_batch_size
        while True:
            batch = [await self._outbox.get()]
            size = len(batch[0][1])
            while len(batch) < limit and size < BATCH_BYTES and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
                size += len(batch[-1][1])
            self._in_flight = len(batch)
            try:
                await self._send(batch)
            finally:
                self._in_flight = 0
                for _ in batch:
                    self._outbox.task_done()

    async def _send(self, batch: list[Item]) -> None:
        """One pipeline for the batch. Messages that failed for a transient reason (the
        whole pipeline, or, in a cluster, the part for one node) are retried until Redis
        takes them; messages Redis refused (e.g. an ACL error) are counted and logged."""
        backoff = ExponentialWithJitterBackoff(
            base=self.options.backoff_base, cap=self.options.backoff_cap
        )
        command = "SPUBLISH" if self.options.sharded else "PUBLISH"
        failures = 0
        while batch:
            # While our subscriptions are down, hold the outbox: sent now, these messages
            # would miss this node's own (and likely its peers') subscriptions.
            await self.link_up.wait()
            self._sending_since = asyncio.get_running_loop().time()
            try:
                pipe = self.client.pipeline(transaction=False)
                for topic, data in batch:
                    pipe.execute_command(command, topic, data)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            except TRANSIENT as exc:
                results = [exc] * len(batch)
            except Exception:
                self._sending_since = None
                self.stats.publish_errors += len(batch)
                log.exception("publishing to Redis failed; dropped %d message(s)", len(batch))
                return
            self._sending_since = None
            retry = [item for item, r in zip(batch, results, strict=True) if is_transient(r)]
            self._failing = bool(retry)
            refused = [r for r in results if isinstance(r, Exception) and not is_transient(r)]
            self.stats.published += len(batch) - len(retry) - len(refused)
            if len(retry) < len(batch):
                self.stats.publish_batches += 1
            if refused:
                self.stats.publish_errors += len(refused)
                log.error(
                    "Redis refused %d of %d published message(s), first: %s",
                    len(refused),
                    len(batch),
                    refused[0],
                )
            if retry:
                self.stats.publish_errors += 1
                failures += 1
                if failures == 1:
                    error = next(r for r in results if is_transient(r))
                    log.warning(
                        "publishing %d message(s) to Redis failed (%s: %s); keeping them "
                        "and retrying",
                        len(retry),
                        type(error).__name__,
                        error,
                    )
                await asyncio.sleep(backoff.compute(failures))
            elif failures:
                log.info("publishing to Redis works again after %d failed attempt(s)", failures)
            batch = retry

    async def close(self) -> None:
        """Send what is queued, then stop. Bounded: by ``close_timeout`` seconds, by
        :data:`CLOSE_STALL` seconds for any one pipeline, and not at all while Redis is
        failing (the flusher backs off after a failed attempt): closing never waits on a
        Redis that is gone."""
        task, self._task = self._task, None
        if task is None:
            return
        self.link_up.set()  # last chance for the outbox, subscribed or not
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.close_timeout
        while self.pending and not task.done():
            now = loop.time()
            started = self._sending_since
            if self._failing or now >= deadline:
                break
            if started is not None and now - started >= CLOSE_STALL:
                break
            await asyncio.sleep(min(_POLL, deadline - now))
        if self.pending:
            log.warning(
                "closing with %d message(s) not published (Redis unreachable)", self.pending
            )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
