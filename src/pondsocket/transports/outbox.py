"""A bounded outgoing queue for one connection, shared by the transports.

The core hands frames to an outlet synchronously (``put`` never awaits) while one writer
task per connection drains the queue at the pace of the socket. The queue is bounded in
*bytes* of encoded frames, so a client that stops reading costs at most ``max_bytes``
here; ``put`` returning ``False`` is the transport's cue to apply its overflow policy.

Typical writer::

    while batch := await outbox.take():
        for frame in batch:
            await write(frame)
    # the outbox was closed and everything queued before the close was taken
"""

from __future__ import annotations

import asyncio

from pondsocket.errors import UsageError


class Outbox:
    """Frames waiting to be written to one connection, at most ``max_bytes`` of them.

    Single consumer: exactly one task may await :meth:`take` at a time.
    """

    __slots__ = ("_bytes", "_closed", "_frames", "_max_bytes", "_waiter")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise UsageError("Outbox max_bytes must be positive")
        self._max_bytes = max_bytes
        # Bounded by _max_bytes: every frame costs at least one byte (see _cost). A list
        # and a future made only while the writer waits, not a deque and an Event: those
        # preallocate about 1.5 KiB per idle connection.
        self._frames: list[bytes] = []
        self._bytes = 0
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet taken by the writer."""
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: bytes) -> bool:
        """Queue ``frame``; ``False`` (frame not queued) when it would exceed ``max_bytes``.

        A closed outbox discards the frame and returns ``True``: the connection is going
        away, so there is no overflow to report.
        """
        if self._closed:
            return True
        cost = _cost(frame)
        if self._bytes + cost > self._max_bytes:
            return False
        self._frames.append(frame)
        self._bytes += cost
        self._wake()
        return True

    async def take(self) -> list[bytes]:
        """Wait for frames and take all of them, oldest first.

        Returns ``[]`` only once the outbox is closed and empty: the writer should stop.
        The batch no longer counts against ``max_bytes``, so a connection holds at most
        ``max_bytes`` queued plus one batch being written.
        """
        while not self._frames and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch, self._frames = self._frames, []
        self._bytes = 0
        return batch

    def close(self, *, discard: bool = False) -> None:
        """Accept no more frames and wake the writer; idempotent.

        Frames already queued are still handed out by :meth:`take` (so a last message
        sent just before closing is delivered) unless ``discard`` is true, as when the
        queue overflowed and flushing it would only delay the close.
        """
        self._closed = True
        if discard:
            self._frames = []
            self._bytes = 0
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _cost(frame: bytes) -> int:
    # At least one byte per frame, so even empty frames cannot grow the queue unbounded.
    return len(frame) or 1
