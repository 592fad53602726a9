"""``NatsHistory``: channel history in NATS JetStream, shared by every node.

One stream (``PONDSOCKET_HISTORY`` by default) holds every channel's history, one subject
per channel (``<prefix>.<hash of the channel key>``), at most ``size_limit`` records per
subject, none older than ``max_age``. Each message carries its offset and epoch in
headers. Offsets are given without a counter service: a node publishes with JetStream's
``Nats-Expected-Last-Subject-Sequence`` set to the last message it saw on the subject, so
two nodes can never give out one offset (the loser re-reads and retries). The first
message of a subject is a marker (offset 0, no data) that fixes the epoch; when the
subject's messages are gone (``max_age``, a purge, a lost stream) the next one starts a
new epoch.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from pondsocket.history.store import HistoryStore, HistoryUnavailableError, Slice, Stored
from pondsocket.wire.ids import random_hex

OFFSET = "Pond-Offset"
EPOCH = "Pond-Epoch"
EXPECT = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071
CONFLICT_RETRIES = 100


class NatsHistory(HistoryStore):
    """History in the JetStream of the NATS server ``client`` is connected to (JetStream
    enabled: ``nats-server -js``). The client stays the caller's."""

    def __init__(
        self,
        client: Client,
        *,
        stream: str = "PONDSOCKET_HISTORY",
        subject_prefix: str = "pondsocket.history",
        size_limit: int = 10_000,
        max_age: float = 86_400.0,
        replicas: int = 1,
    ) -> None:
        self._client = client
        self._js = client.jetstream()
        self._stream = stream
        self._prefix = subject_prefix
        self._config = StreamConfig(
            name=stream,
            subjects=[f"{subject_prefix}.>"],
            max_msgs_per_subject=size_limit + 1,  # and the marker
            max_age=max_age,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
            duplicate_window=120.0,
        )
        self._ready: asyncio.Lock = asyncio.Lock()
        self._created = False
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def _ensure_stream(self) -> None:
        if self._created:
            return
        async with self._ready:
            if not self._created:
                try:
                    await self._js.stream_info(self._stream)
                except NotFoundError:
                    await self._js.add_stream(self._config)
                self._created = True

    def _subject(self, key: str) -> str:
        return f"{self._prefix}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def _last(self, subject: str) -> tuple[int, int, str] | None:
        """``(stream sequence, offset, epoch)`` of the subject's last message."""
        try:
            msg = await self._js.get_last_msg(self._stream, subject)
        except NotFoundError:
            return None
        headers = msg.headers or {}
        return int(msg.seq or 0), int(headers.get(OFFSET, 0)), str(headers.get(EPOCH, ""))

    async def _position(self, subject: str) -> tuple[int, int, str]:
        """The subject's last message, the marker published first if it has none."""
        for _ in range(CONFLICT_RETRIES):
            last = await self._last(subject)
            if last is not None:
                return last
            epoch = random_hex()[:16]
            try:
                ack = await self._js.publish(
                    subject, b"", headers={OFFSET: "0", EPOCH: epoch, EXPECT: "0"}
                )
            except BadRequestError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
                continue  # another node's marker came first: use it
            return int(ack.seq), 0, epoch
        raise HistoryUnavailableError(f"no stable position for {subject}")

    async def append(
        self, key: str, records: Sequence[bytes], *, size: int, ttl: float, meta_ttl: float
    ) -> tuple[str, list[int]]:
        subject = self._subject(key)
        lock, users = self._locks.get(subject, (asyncio.Lock(), 0))
        self._locks[subject] = (lock, users + 1)
        try:
            async with lock:  # this node's appends to one channel, one at a time
                await self._ensure_stream()
                epoch, offsets = await self._append(subject, records)
                every = max(1, size // 10)
                if offsets and offsets[-1] % every < len(records):
                    # The stream keeps size_limit per subject; trim this channel to about
                    # its own size (within 10 %) every tenth of it.
                    await self._js.purge_stream(self._stream, subject=subject, keep=size)
                return epoch, offsets
        except (NatsError, OSError, TimeoutError) as exc:
            raise HistoryUnavailableError(f"history append failed: {_describe(exc)}") from exc
        finally:
            lock, users = self._locks[subject]
            if users <= 1:  # bounded: no lock kept for a channel nobody appends to
                del self._locks[subject]
            else:
                self._locks[subject] = (lock, users - 1)

    async def _append(self, subject: str, records: Sequence[bytes]) -> tuple[str, list[int]]:
        seq, offset, epoch = await self._position(subject)
        offsets: list[int] = []
        conflicts = 0
        for data in records:
            # A publish that timed out may still be stored (the client sends it once the
            # link is back): the retry carries the same id and JetStream keeps one copy.
            msg_id = hashlib.sha256(data).hexdigest()[:32]
            while True:
                headers = {
                    OFFSET: str(offset + 1),
                    EPOCH: epoch,
                    EXPECT: str(seq),
                    "Nats-Msg-Id": msg_id,
                }
                try:
                    ack = await self._js.publish(subject, data, headers=headers)
                    break
                except BadRequestError as exc:
                    conflicts += 1
                    if exc.err_code != WRONG_LAST_SEQUENCE or conflicts > CONFLICT_RETRIES:
                        raise
                    seq, offset, new_epoch = await self._position(subject)
                    if new_epoch != epoch and offsets:
                        raise HistoryUnavailableError(
                            "the stream restarted during an append"
                        ) from exc
                    epoch = new_epoch
            if ack.duplicate:  # stored before: its offset is the one it got then
                stored = await self._js.get_msg(self._stream, int(ack.seq))
                offsets.append(int((stored.headers or {}).get(OFFSET, 0)))
                seq, offset, epoch = await self._position(subject)
                continue
            seq, offset = int(ack.seq), offset + 1
            offsets.append(offset)
        return epoch, offsets

    async def read(self, key: str, after: int, limit: int, *, ttl: float, meta_ttl: float) -> Slice:
        subject = self._subject(key)
        try:
            await self._ensure_stream()
            _, top, epoch = await self._position(subject)
            records = await self._records(subject, after, limit, ttl) if limit > 0 else []
        except (NatsError, OSError, TimeoutError) as exc:
            raise HistoryUnavailableError(f"history read failed: {_describe(exc)}") from exc
        return Slice(epoch, top, [r for r in records if r.offset <= top])

    async def _records(self, subject: str, after: int, limit: int, ttl: float) -> list[Stored]:
        sub = await self._js.pull_subscribe(
            subject,
            stream=self._stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
            ),
        )
        out: list[Stored] = []
        try:
            info = await sub.consumer_info()
            pending = int(info.num_pending or 0)
            oldest = datetime.now().timestamp() - ttl
            while pending > 0 and len(out) < limit:
                batch = await sub.fetch(min(pending, 1000), timeout=5.0)
                pending -= len(batch)
                for msg in batch:
                    offset = int((msg.headers or {}).get(OFFSET, 0))
                    stored = _time(msg.metadata.timestamp)
                    if offset > after and stored >= oldest and len(out) < limit:
                        out.append(Stored(offset, msg.data, stored))
        finally:
            await sub.unsubscribe()
        return out


def _time(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def _describe(exc: BaseException) -> str:
    detail = getattr(exc, "description", None) or str(exc)
    code = getattr(exc, "err_code", None)
    return f"{type(exc).__name__}({code}: {detail})" if code else f"{type(exc).__name__}: {detail}"
