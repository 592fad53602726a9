"""``MemoryHistory``: channel history in this process (one node, or the in-process
cluster of the in-memory bus). Bounded: ``size`` records per channel, and channels idle
for ``meta_ttl`` are forgotten."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pondsocket.history.store import HistoryStore, Slice, Stored
from pondsocket.wire.ids import random_hex


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    records: deque[Stored] = field(default_factory=deque)
    touched: float = 0.0
    meta_ttl: float = 0.0


class MemoryHistory(HistoryStore):
    """A :class:`HistoryStore` in this process: for one node, or the nodes of one process
    sharing an in-memory bus (the history store of :class:`InMemoryPubSub`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._clock = clock

    def _stream(self, key: str, meta_ttl: float) -> _Stream:
        now = self._clock()
        self._expire(now)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(random_hex()[:16])
        else:
            self._streams.move_to_end(key)
        stream.touched, stream.meta_ttl = now, meta_ttl
        return stream

    def _expire(self, now: float) -> None:
        # Oldest-touched first: stop at the first stream still in use.
        while self._streams:
            key, stream = next(iter(self._streams.items()))
            if now - stream.touched < stream.meta_ttl:
                return
            del self._streams[key]

    async def append(
        self, key: str, records: Sequence[bytes], *, size: int, ttl: float, meta_ttl: float
    ) -> tuple[str, list[int]]:
        stream = self._stream(key, meta_ttl)
        first = stream.top + 1
        now = stream.touched
        for data in records:
            stream.top += 1
            stream.records.append(Stored(stream.top, data, now))
        while len(stream.records) > size:
            stream.records.popleft()
        return stream.epoch, list(range(first, first + len(records)))

    async def read(self, key: str, after: int, limit: int, *, ttl: float, meta_ttl: float) -> Slice:
        stream = self._stream(key, meta_ttl)
        oldest = stream.touched - ttl
        out: list[Stored] = []
        if limit > 0:
            for record in stream.records:
                if record.offset > after and record.time >= oldest:
                    out.append(record)
                    if len(out) >= limit:
                        break
        return Slice(stream.epoch, stream.top, out)

    @property
    def channels(self) -> int:
        """How many channels' streams are held."""
        return len(self._streams)
