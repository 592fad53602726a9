"""One log line per interval for events that can repeat without bound (hostile input)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable
from typing import Any


class RateLimitedLog:
    """Logs the first event at once, then at most one line per ``interval`` seconds; each
    line says how many events it stands for, so nothing is hidden and nothing floods."""

    __slots__ = ("_clock", "_interval", "_last", "_logger", "_pending")

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._interval, self._clock = logger, interval, clock
        self._pending = 0
        self._last = -math.inf

    def warning(self, message: str, *args: object) -> bool:
        """Count one event and log ``message`` if the interval has passed; ``True`` if it
        logged. ``%(count)d``-style is not needed: the count is appended."""
        return self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object, **kwargs: Any) -> bool:
        """:meth:`warning` at any level; ``kwargs`` go to the logger (``exc_info=``)."""
        self._pending += 1
        now = self._clock()
        if now - self._last < self._interval:
            return False
        if self._pending > 1:
            message += " (%d such events since the last line)"
            args = (*args, self._pending)
        self._logger.log(level, message, *args, **kwargs)
        self._pending, self._last = 0, now
        return True


class FailureLog:
    """Failures of app code that a client can trigger at will (a handler that raises on a
    payload it did not expect): the first of each kind is logged with its traceback, the
    repeats as one line per ``interval`` per kind, with their count and the exception."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        max_kinds: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._interval, self._clock = logger, interval, clock
        self._max_kinds = max_kinds
        self._kinds: dict[tuple[Hashable, type[BaseException]], RateLimitedLog] = {}

    def error(self, kind: Hashable, exc: BaseException, message: str, *args: object) -> None:
        """Log that ``kind`` (e.g. the event's name) failed with ``exc``."""
        key = (kind, type(exc))
        repeats = self._kinds.get(key)
        if repeats is None:
            if len(self._kinds) >= self._max_kinds:  # bounded: forget the oldest kind
                del self._kinds[next(iter(self._kinds))]
            repeats = self._kinds[key] = RateLimitedLog(self._logger, self._interval, self._clock)
            repeats.log(logging.ERROR, message, *args, exc_info=exc)
            return
        repeats.log(
            logging.ERROR,
            message + " again (%s: %s; traceback logged the first time)",
            *args,
            type(exc).__name__,
            exc,
        )
