"""Fan-out writes for the standalone transport: each broadcast framed once, and every
frame a connection gets during one pass of the event loop sent in one write.

Why: a delivery's cost is mostly its ``send()`` system call (py-spy: three quarters of a
node's time at 100,000 deliveries/s). When several messages reach a connection in the
same pass (a burst from a client, a batch read from the broker, a node catching up after
being descheduled), their frames leave together. Nothing waits for a timer: the pass
ends, the frames go, so a lone message is not delayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.frames import Frame, Opcode

__all__ = ["FrameCache", "WriteBatcher"]

log = logging.getLogger("pondsocket.standalone")


class FrameCache:
    """The last payload, framed once as an unmasked TEXT frame.

    A server's frames are not masked, so without an extension (compression) one message
    is the same bytes on every connection. Fan-out hands the same payload object to each
    recipient in turn, so one entry is enough: the frame is built once per broadcast
    instead of once per delivery. Holding the payload keeps its identity unique.
    """

    __slots__ = ("_framed", "_payload")

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._framed = b""

    def frame(self, payload: bytes) -> bytes:
        if payload is not self._payload:
            self._framed = Frame(Opcode.TEXT, payload).serialize(mask=False)
            self._payload = payload
        return self._framed


class WriteBatcher:
    """Calls each registered flush once, at the end of the current pass of the loop."""

    __slots__ = ("_pending", "_scheduled")

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []
        self._scheduled = False

    def defer(self, flush: Callable[[], None]) -> None:
        """Run ``flush`` soon; the caller registers each connection once per pass."""
        self._pending.append(flush)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for flush in pending:
            try:
                flush()
            except Exception:  # one connection's failure must not strand the others' frames
                log.exception("flushing a connection's frames failed")
