"""The Kafka clients of the Kafka backend (:mod:`pondsocket.pubsub.kafka`): one consumer per
Kafka topic, assigned every partition without a consumer group, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from pondsocket.pubsub.kafka_support import Options

log = logging.getLogger("pondsocket.pubsub.kafka")

TRANSIENT: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)
"""Errors that mean "Kafka is unreachable or not ready": retried, never final."""


def stray_cancel() -> bool:
    """True inside ``except CancelledError`` when nobody cancelled this task: aiokafka
    cancels the futures of requests on a connection it closes, which surfaces as a
    CancelledError in the caller; that is a connection error, not a cancellation."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


Dispatch = Callable[[str, bytes], None]
Trouble = Callable[[BaseException], None]


class TopicMissingError(KafkaError):  # type: ignore[misc]
    """A Kafka topic the node needs is not (or no longer) in the broker's metadata."""


async def create_topics(admin: Any, names: set[str], options: Options) -> int:
    """Create the Kafka topics of ``names`` that do not exist; returns how many were."""
    if not names:
        return 0
    existing = set(await admin.list_topics())
    missing = sorted(names - existing)
    if not missing or not options.create_topics:
        if missing:
            raise TopicMissingError(f"Kafka topics {missing} do not exist (create_topics=False)")
        return 0
    new = [NewTopic(n, options.partitions, options.replication_factor) for n in missing]
    response = await admin.create_topics(new)
    created = 0
    for topic, code, message, *_ in response.topic_errors:
        error = for_code(code)
        if code == 0:
            created += 1
            log.info("created Kafka topic %r", topic)
        elif error is not TopicAlreadyExistsError:  # another node was faster: fine
            raise error(f"creating Kafka topic {topic!r}: {message}")
    return created


def make_admin(options: Options) -> Any:
    return AIOKafkaAdminClient(
        bootstrap_servers=options.bootstrap_servers,
        client_id=f"{options.client_id}-admin",
        request_timeout_ms=options.request_timeout_ms,
    )


class Reader:
    """Reads every partition of one Kafka topic from its end, without a consumer group (so
    every node sees every record), and hands each record's (key, value) to ``dispatch``.
    A Kafka error ends the reader and is reported to ``trouble``."""

    def __init__(self, topic: str, options: Options, dispatch: Dispatch, trouble: Trouble) -> None:
        self.topic = topic
        self._options = options
        self._dispatch = dispatch
        self._trouble = trouble
        self._consumer: Any = None
        self._partitions: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[Any, int] = {}
        self._beyond: set[Any] = set()

    async def start(self) -> None:
        """Connect, assign every partition and seek to the end: once this returns, every
        record produced afterwards is read."""
        options = self._options
        consumer = AIOKafkaConsumer(
            bootstrap_servers=options.bootstrap_servers,
            client_id=f"{options.client_id}-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            max_partition_fetch_bytes=options.fetch_size,
            request_timeout_ms=options.request_timeout_ms,
        )
        self._consumer = consumer
        await consumer.start()
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TopicMissingError(f"Kafka topic {self.topic!r} has no partitions")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(self._partitions)
        await consumer.seek_to_end(*self._partitions)
        for partition in self._partitions:  # resolves the end offsets now, not lazily
            await consumer.position(partition)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"pondsocket-kafka-reader:{self.topic}"
        )

    async def _run(self) -> None:
        consumer = self._consumer
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.key is None or record.value is None:
                            continue  # not written by PondSocket
                        try:
                            topic = record.key.decode()
                        except UnicodeDecodeError:
                            continue
                        self._dispatch(topic, record.value)
        except asyncio.CancelledError as exc:
            if not stray_cancel():
                raise
            self._trouble(exc)
        except Exception as exc:
            log.warning("Kafka reader of %r failed: %r", self.topic, exc)
            self._trouble(exc)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def check(self) -> None:
        """Raise if the broker lost this topic's records (restarted with memory storage
        and the topic re-created by someone): the position went back (aiokafka reset it
        after OFFSET_OUT_OF_RANGE), or it stays beyond the topic's end on two checks in
        a row. (Tansu's end offset may lag the records it serves: one check is no proof.)"""
        if not self.running:
            raise TopicMissingError(f"the reader of {self.topic!r} stopped")
        positions = {p: await self._consumer.position(p) for p in self._partitions}
        ends = await self._consumer.end_offsets(self._partitions)
        beyond = set()
        for partition, position in positions.items():
            last = self._positions.get(partition, 0)
            if position < last:
                raise TopicMissingError(
                    f"Kafka topic {self.topic!r} went back from offset {last} to {position}"
                )
            if ends.get(partition, 0) < position:
                if partition in self._beyond and last == position:
                    raise TopicMissingError(
                        f"Kafka topic {self.topic!r} ends at {ends.get(partition)}, before "
                        f"this node's position {position}: the broker lost its records"
                    )
                beyond.add(partition)
        self._positions, self._beyond = positions, beyond

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            if asyncio.current_task() is not self._task:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                async with asyncio.timeout(self._options.close_timeout):
                    await consumer.stop()
            except Exception as exc:  # closing a consumer of a dead broker: nothing to do
                log.debug("stopping the Kafka reader of %r: %r", self.topic, exc)
