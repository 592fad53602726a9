"""One log line per interval for events that can repeat without bound (hostile input)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable


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
        self._pending += 1
        now = self._clock()
        if now - self._last < self._interval:
            return False
        if self._pending > 1:
            message += " (%d such events since the last line)"
            args = (*args, self._pending)
        self._logger.warning(message, *args)
        self._pending, self._last = 0, now
        return True
