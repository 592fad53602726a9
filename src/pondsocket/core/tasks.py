"""Background work the core starts (leave handlers): tracked, logged, drained on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pondsocket.core.ratelog import FailureLog

log = logging.getLogger("pondsocket")
_failures = FailureLog(log)  # leave handlers fail per client: the first traceback, then counts


class TaskSet:
    def __init__(self, on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_failure = on_failure  # the server's recent errors (the admin page)

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Task[None], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _failures.error(what, exc, "%s failed", what)
            if self._on_failure is not None:
                self._on_failure(what, exc)

    async def drain(self, timeout: float) -> None:
        """Wait for running tasks, cancelling what is still running after ``timeout``."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
