"""The last handler errors and refusals of a server, kept for the admin page: a bounded
ring, so a client that makes a handler fail at will costs a few hundred bytes, not memory
without end."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

RECENT_ERRORS = 50
_MAX_TEXT = 300  # characters of one field: exception messages may quote client input


@dataclass(slots=True)
class RecentError:
    """One error, or a run of identical ones (``count``), the last at ``time``."""

    time: float
    """Wall-clock seconds (Unix time) of the last occurrence."""
    kind: str
    """What failed or refused: ``"event handler"``, ``"origin refused"``, ..."""
    where: str
    """Which endpoint, channel or event (may be empty)."""
    error: str
    """The exception as ``Type: message``, or the refusal's reason."""
    count: int = 1


class RecentErrors:
    """The last ``size`` errors, newest last. A repeat of the newest one only bumps its
    count, so a flood of one failure does not push every other one out."""

    __slots__ = ("_clock", "_entries")

    def __init__(self, size: int = RECENT_ERRORS, clock: Callable[[], float] = time.time) -> None:
        self._entries: collections.deque[RecentError] = collections.deque(maxlen=size)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, kind: str, where: str, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            text = error
        entry = RecentError(self._clock(), kind[:_MAX_TEXT], where[:_MAX_TEXT], text[:_MAX_TEXT])
        last = self._entries[-1] if self._entries else None
        if last is not None and (last.kind, last.where, last.error) == (
            entry.kind,
            entry.where,
            entry.error,
        ):
            last.count += 1
            last.time = entry.time
            return
        self._entries.append(entry)

    def entries(self) -> list[RecentError]:
        """Oldest first."""
        return list(self._entries)
