"""One keep-alive sweep for a whole server instead of one timer task per connection.

websockets' own keep-alive runs a task per connection (its coroutine frame, a sleeping
timer and a future: about 1 KiB each). At tens of thousands of idle connections that is a
noticeable share of a node's memory, so the standalone transport turns it off and pings
everyone from here: every ``interval`` seconds a ping goes to each open connection, and
a connection whose pong has not come back ``timeout`` seconds later is closed with 1011,
as websockets would do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Protocol

from websockets.frames import CloseCode

__all__ = ["Pingable", "keepalive_loop"]

log = logging.getLogger("pondsocket.keepalive")

# Pings are written synchronously; yielding to the loop every so often keeps a sweep over
# tens of thousands of connections from stalling the traffic of the others.
_PINGS_PER_STEP = 500
_TIMEOUT_REASON = "keepalive ping timeout"


class Pingable(Protocol):
    async def ping(self) -> asyncio.Future[float] | None:
        """Send a ping; the returned future completes on the pong (``None``: closing)."""

    def close(self, code: int, reason: str) -> None: ...


async def keepalive_loop(
    connections: Callable[[], Collection[Pingable]], interval: float, timeout: float | None
) -> None:
    """Run until cancelled: ping every connection each ``interval`` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        waiting: list[tuple[Pingable, asyncio.Future[float]]] = []
        for count, connection in enumerate(list(connections()), 1):
            try:
                pong = await connection.ping()
            except Exception:  # one connection's failure must not end everyone's keep-alive
                log.exception("keep-alive ping failed")
                continue
            if pong is not None and timeout is not None:
                waiting.append((connection, pong))
            if count % _PINGS_PER_STEP == 0:
                await asyncio.sleep(0)
        if waiting and timeout is not None:
            loop.call_later(timeout, _close_unanswered, waiting)


def _close_unanswered(waiting: list[tuple[Pingable, asyncio.Future[float]]]) -> None:
    for connection, pong in waiting:
        # websockets completes the pong future on the pong, and cancels it (done) when the
        # connection closes: only a live connection that stayed silent is left pending.
        if not pong.done():
            connection.close(CloseCode.INTERNAL_ERROR, _TIMEOUT_REASON)
