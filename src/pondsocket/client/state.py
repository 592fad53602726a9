"""Connection and channel states, and :class:`Watched`: a value you can read, watch and
await (``await client.state.wait_for(ConnectionState.CONNECTED, timeout=5)``)."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from pondsocket.client.errors import ClientTimeoutError

log = logging.getLogger("pondsocket.client")

T = TypeVar("T")


class ConnectionState(enum.StrEnum):
    """Where a :class:`PondClient` connection stands (``client.state.value``); ``CLOSED`` and
    ``FAILED`` are final."""

    IDLE = "idle"  # not connected yet
    CONNECTING = "connecting"  # first connection attempt
    CONNECTED = "connected"  # the server sent its CONNECTION frame
    RECONNECTING = "reconnecting"  # the connection was lost; backing off and retrying
    CLOSED = "closed"  # closed by the application (final)
    FAILED = "failed"  # refused (4xx) or reconnection gave up (final)


class ChannelState(enum.StrEnum):
    """Where a client :class:`Channel` stands (``channel.state.value``)."""

    IDLE = "IDLE"  # created, never joined
    JOINING = "JOINING"  # join sent, no answer yet
    JOINED = "JOINED"
    STALLED = "STALLED"  # the connection dropped; it rejoins when it is back
    CLOSED = "CLOSED"  # left, evicted, or the client closed (final until join() again)
    DECLINED = "DECLINED"  # the server refused the join


class Watched(Generic[T]):
    """A current value with change callbacks and bounded waits."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._watchers: list[Callable[[T], object]] = []
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        if value == self._value:
            return
        self._value = value
        self._changed.set()
        self._changed = asyncio.Event()
        for watcher in list(self._watchers):
            try:
                watcher(value)
            except Exception:  # a broken callback must not stop the client
                log.exception("state watcher %r failed", watcher)

    def watch(self, callback: Callable[[T], object]) -> Callable[[], None]:
        """Call ``callback(new_value)`` on every change; returns an unsubscribe function."""
        self._watchers.append(callback)

        def unsubscribe() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unsubscribe

    async def wait_for(self, *values: T, timeout: float | None) -> T:
        """Return once the value is one of ``values``; :class:`ClientTimeoutError` after
        ``timeout`` seconds (None: no limit)."""
        try:
            async with asyncio.timeout(timeout):
                while self._value not in values:
                    await self._changed.wait()
        except TimeoutError:
            wanted = " or ".join(str(v) for v in values)
            raise ClientTimeoutError(
                f"still {self._value} after {timeout} s (waited for {wanted})"
            ) from None
        return self._value
