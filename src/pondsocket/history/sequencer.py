"""Putting one channel's recorded broadcasts in offset order on this node.

Broadcasts of a channel get their offsets from the shared store, but reach a node over
the broker from several nodes, so they may arrive out of order, twice (a live copy and
one fetched to fill a gap), or not at all. The sequencer delivers each offset once, in
order; what it cannot place yet waits (bounded) until the gap is filled or given up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pondsocket.core.history import Recorded


@dataclass(slots=True)
class Placed:
    """What one offer (or a skip) lets through."""

    ready: list[Recorded] = field(default_factory=list)
    reset: bool = False
    """The epoch changed: the stream restarted; members must be told."""
    waiting: bool = False
    """Something is held behind a gap."""
    skipped: bool = False
    """A gap was given up: offsets before ``ready`` will never be delivered here."""


class Sequencer:
    def __init__(self, limit: int) -> None:
        self.epoch: str | None = None
        self.next: int | None = None
        """The next offset to deliver (``None`` until the first message or position)."""
        self._waiting: dict[int, Recorded] = {}
        self._limit = limit
        self._start: int | None = None
        self._late: set[int] = set()

    @property
    def waiting(self) -> bool:
        """Whether broadcasts wait behind a gap."""
        return bool(self._waiting)

    @property
    def highest(self) -> int:
        """The highest offset waiting behind a gap (0: none)."""
        return max(self._waiting, default=0)

    @property
    def last(self) -> int | None:
        """The last offset delivered here (``None``: not known yet)."""
        return None if self.next is None else self.next - 1

    def start_at(self, epoch: str, last: int) -> None:
        """Learn the stream's position (from the store) before any message arrived.

        Broadcasts stored up to ``last`` may still be on their way here: nothing was
        delivered here yet, so each of them (within ``limit`` of it) is let through once
        when it arrives, out of line; only the later ones wait for their turn."""
        if self.next is None:
            self.epoch, self.next = epoch, last + 1
            self._start = last

    def offer(self, recorded: Recorded) -> Placed:
        nxt = self.next
        if recorded.offset == nxt and recorded.epoch == self.epoch and not self._waiting:
            self.next = recorded.offset + 1  # the steady state: next in line, no gap
            return Placed([recorded])
        placed = Placed()
        if self.epoch is None or self.next is None:
            self.epoch, self.next = recorded.epoch, recorded.offset
        elif recorded.epoch != self.epoch:
            self.epoch, self.next = recorded.epoch, recorded.offset
            self._waiting.clear()
            self._start = None
            self._late.clear()
            placed.reset = True
        if recorded.offset < self.next:
            if self._is_late(recorded):
                self._late.add(recorded.offset)
                placed.ready.append(recorded)
            return placed  # else delivered already
        self._waiting.setdefault(recorded.offset, recorded)
        self._drain(placed)
        if len(self._waiting) > self._limit:  # the gap will not be filled in time
            self._skip(placed)
        placed.waiting = bool(self._waiting)
        return placed

    def _is_late(self, recorded: Recorded) -> bool:
        """Stored before :meth:`start_at`'s position, arriving after it, not seen yet."""
        start, offset = self._start, recorded.offset
        return (
            start is not None
            and recorded.epoch == self.epoch
            and start - self._limit < offset <= start
            and offset not in self._late
            and len(self._late) < self._limit
        )

    def skip(self) -> Placed:
        """Give up on the current gap: deliver from the lowest waiting offset on."""
        placed = Placed()
        if self._waiting:
            self._skip(placed)
        placed.waiting = bool(self._waiting)
        return placed

    def _skip(self, placed: Placed) -> None:
        self.next = min(self._waiting)
        placed.skipped = True
        self._drain(placed)

    def _drain(self, placed: Placed) -> None:
        assert self.next is not None
        waiting, nxt = self._waiting, self.next
        while nxt in waiting:
            placed.ready.append(waiting.pop(nxt))
            nxt += 1
        self.next = nxt
