"""The publishing side of the SNS/SQS backend: ``publish_concurrency`` lanes, each a FIFO
drained by one task in PublishBatch calls (up to 10 messages and 256 KiB a call). A topic
always goes through the same lane, so one node's messages of a topic leave in order.
Outstanding messages are bounded by ``outbox_size``; failed calls are retried with
jittered back-off once the owner has checked its topology again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from collections.abc import Callable
from typing import Any

from pondsocket.pubsub.aws_support import (
    SNS_LIMIT,
    TRANSIENT,
    Options,
    PubSubUnavailableError,
    SnsSqsStats,
    is_sender_fault,
)

log = logging.getLogger("pondsocket.pubsub.aws")

Item = tuple[str, str, dict[str, Any], int]  # (topic, body, attributes, wire size)


def backoff(options: Options, attempt: int) -> float:
    """Full-jitter exponential back-off: a random delay up to min(cap, base * 2**attempt)."""
    return random.uniform(0, min(options.backoff_cap, options.backoff_base * 2 ** min(attempt, 30)))


class Publisher:
    def __init__(
        self,
        sns: Any,
        topic_arn: Callable[[], str],
        options: Options,
        stats: SnsSqsStats,
        link_up: asyncio.Event,
        trouble: Callable[[BaseException, str], None],
    ) -> None:
        self.sns = sns
        self.options = options
        self.stats = stats
        self._topic_arn = topic_arn
        self._link_up = link_up
        self._trouble = trouble
        self._room = asyncio.Semaphore(options.outbox_size)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._lanes: list[asyncio.Queue[Item]] = [
            asyncio.Queue() for _ in range(options.publish_concurrency)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def pending(self) -> int:
        """Messages accepted by ``publish()`` and not yet accepted (or refused) by SNS."""
        return self._pending

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._lane(queue), name=f"pondsocket-aws-publisher-{i}")
            for i, queue in enumerate(self._lanes)
        ]

    async def put(self, item: Item) -> None:
        if self._room.locked():
            try:
                async with asyncio.timeout(self.options.publish_timeout):
                    await self._room.acquire()
            except TimeoutError:
                self.stats.publish_rejected += 1
                reason = "unreachable" if not self._link_up.is_set() else "not keeping up"
                raise PubSubUnavailableError(
                    f"cannot publish on {item[0]!r}: {self.options.outbox_size} messages have "
                    f"been waiting for SNS for {self.options.publish_timeout:g} s (SNS is "
                    f"{reason})"
                ) from None
        else:
            await self._room.acquire()
        self._pending += 1
        self._idle.clear()
        lane = zlib.crc32(item[0].encode("utf-8", "surrogatepass")) % len(self._lanes)
        self._lanes[lane].put_nowait(item)

    def _done(self, count: int) -> None:
        self._pending -= count
        for _ in range(count):
            self._room.release()
        if self._pending == 0:
            self._idle.set()

    async def _lane(self, queue: asyncio.Queue[Item]) -> None:
        limit = self.options.publish_batch_size
        while True:
            batch = [await queue.get()]
            size = batch[0][3]
            while len(batch) < limit and not queue.empty():
                item = queue._queue[0]  # type: ignore[attr-defined]  # peek: the size decides
                if size + item[3] > SNS_LIMIT:
                    break
                batch.append(queue.get_nowait())
                size += item[3]
            try:
                await self._send(batch)
            finally:
                self._done(len(batch))

    async def _send(self, batch: list[Item]) -> None:
        failures = 0
        while batch:
            if not self._closing:
                await self._link_up.wait()  # hold messages while the topology is in doubt
            try:
                batch = await self._call(batch)
            except TRANSIENT as exc:
                self.stats.publish_errors += 1
                if is_sender_fault(exc):
                    log.error("SNS refused %d message(s): %s", len(batch), exc)
                    return
                failures += 1
                if failures == 1:
                    log.warning(
                        "publishing %d message(s) to SNS failed (%s); retrying", len(batch), exc
                    )
                self._trouble(exc, "publishing")
                await asyncio.sleep(backoff(self.options, failures))
            except Exception:
                self.stats.publish_errors += len(batch)
                log.exception("publishing to SNS failed; dropped %d message(s)", len(batch))
                return

    async def _call(self, batch: list[Item]) -> list[Item]:
        """Send the batch; returns the messages to retry."""
        arn = self._topic_arn()
        if len(batch) == 1:
            _, body, attributes, _ = batch[0]
            await self.sns.publish(TopicArn=arn, Message=body, MessageAttributes=attributes)
            self.stats.published += 1
            self.stats.publish_batches += 1
            return []
        entries = [
            {"Id": str(i), "Message": body, "MessageAttributes": attributes}
            for i, (_, body, attributes, _) in enumerate(batch)
        ]
        reply = await self.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        self.stats.publish_batches += 1
        failed = reply.get("Failed") or []
        self.stats.published += len(batch) - len(failed)
        retry: list[Item] = []
        for failure in failed:
            item = batch[int(failure["Id"])]
            if failure.get("SenderFault"):
                self.stats.publish_errors += 1
                log.error(
                    "SNS refused a message on %r: %s %s",
                    item[0],
                    failure.get("Code"),
                    failure.get("Message"),
                )
            else:
                retry.append(item)
        if retry:
            self.stats.publish_errors += len(retry)
            await asyncio.sleep(backoff(self.options, 1))
        return retry

    async def close(self) -> None:
        """Send what is queued, for up to ``close_timeout`` seconds, then stop."""
        self._closing = True
        if self._pending:
            try:
                async with asyncio.timeout(self.options.close_timeout):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("closing with %d message(s) not published to SNS", self._pending)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
