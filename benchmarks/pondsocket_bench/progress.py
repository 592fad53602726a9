"""Progress on stderr: one status line, rewritten in place on a terminal."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tty = sys.stderr.isatty()
        self._open = False  # a \r line is pending its newline

    def say(self, text: str) -> None:
        """A status line of its own."""
        if not self.enabled:
            return
        self._end_line()
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def update(self, text: str) -> None:
        """A transient line (rewritten in place on a terminal, else printed)."""
        if not self.enabled:
            return
        if self._tty:
            sys.stderr.write(f"\r\x1b[Kbench:   {text}")
            sys.stderr.flush()
            self._open = True
        else:
            print(f"bench:   {text}", file=sys.stderr, flush=True)

    def _end_line(self) -> None:
        if self._open:
            sys.stderr.write("\n")
            self._open = False

    async def ticker(self, describe: Callable[[float], str], interval: float = 1.0) -> None:
        """Call ``describe(elapsed)`` and show it every ``interval`` s until cancelled."""
        start = time.monotonic()
        try:
            while True:
                await asyncio.sleep(interval)
                self.update(describe(time.monotonic() - start))
        finally:
            self._end_line()
