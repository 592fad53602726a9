"""The standalone transport's write side of one connection: :class:`WebSocketOutlet`.

Outgoing frames bypass ``await connection.send()``: the core's fan-out calls
:meth:`WebSocketOutlet.send` synchronously once per recipient; the frame is built once
per broadcast and written to the transport at the end of the loop's pass, together with
whatever else that connection got in the same pass (``batching.py``). The per-connection
bound (``outbox_max_bytes``) covers those frames and the transport's write buffer.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ProtocolError
from websockets.protocol import OPEN

from pondsocket.core.flow import FlowState, note_backlog
from pondsocket.core.options import OverflowPolicy
from pondsocket.core.outlet import CloseCode
from pondsocket.core.ratelog import RateLimitedLog
from pondsocket.transports.batching import FrameCache, WriteBatcher
from pondsocket.transports.host import Host
from pondsocket.wire.codec import fit_close_reason

__all__ = ["WebSocketOutlet"]

log = logging.getLogger("pondsocket.standalone")
# One line per 10 s for the whole server, however many slow clients drop frames.
_drops = RateLimitedLog(log)


class WebSocketOutlet:
    """The core's write side of one connection: synchronous, ordered, bounded."""

    __slots__ = (
        "_abort_timer",
        "_backlogged",
        "_batcher",
        "_closing",
        "_connection",
        "_drop",
        "_frames",
        "_id",
        "_limit",
        "_metrics",
        "_protocol",
        "_queued",
        "_queued_bytes",
        "_soft",
        "_transport",
        "flow",
    )

    def __init__(
        self,
        connection: ServerConnection,
        pond: Host,
        connection_id: str,
        frames: FrameCache | None = None,
        batcher: WriteBatcher | None = None,
    ):
        self._connection = connection
        self._protocol = connection.protocol
        self._transport = connection.transport
        # Shared frames only suit a connection without extensions (no per-connection
        # compression state); the others frame each message through websockets.
        self._frames = frames if not connection.protocol.extensions else None
        self._batcher = batcher if self._frames is not None else None
        self._queued: list[bytes] | None = None  # frames of this pass, not yet written
        self._queued_bytes = 0
        self._id = connection_id
        self._limit = pond.options.outbox_max_bytes
        self.flow = FlowState(pond.options.outbox_soft_bytes)
        self._soft = self.flow.soft
        self._backlogged = 0  # bytes sent while others were still pending (see written())
        self._drop = pond.options.overflow_policy is OverflowPolicy.DROP
        self._metrics = pond.metrics
        self._closing = False
        self._abort_timer: asyncio.TimerHandle | None = None

    def send(self, frame: bytes) -> None:
        if self._closing or self._protocol.state is not OPEN:
            return  # closing: the client resyncs on reconnect, nothing more is owed to it
        # The bound is checked before writing, so the buffer never grows past the limit,
        # except for a single frame larger than the limit written to an empty buffer
        # (otherwise such a frame could never be delivered, even to a fast client).
        pending = self._transport.get_write_buffer_size() + self._queued_bytes
        if pending:  # nothing more than the original test while the client keeps up
            if pending + len(frame) > self._limit:
                self._overflow(pending)
                return
            self._backlogged += len(frame)
            if pending > self._soft:
                note_backlog(self)  # flow control: the client sending this will wait
        try:
            if self._frames is not None:
                framed = self._frames.frame(frame)
                if self._batcher is None:
                    self._transport.write(framed)
                elif self._queued is None:
                    self._queued = [framed]
                    self._queued_bytes = len(framed)
                    self._batcher.defer(self.flush)
                else:
                    self._queued.append(framed)
                    self._queued_bytes += len(framed)
            else:
                # What websockets.broadcast() does: frame the bytes as a TEXT message in
                # the sans-I/O protocol (no await), then flush its output.
                self._protocol.send_text(frame)
                self._connection.send_data()
        except Exception as exc:  # the transport is going away: recv() will end the session
            log.debug("connection %s: write failed: %r", self._id, exc)
            self._closing = True

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet written to the socket (the metrics sample it)."""
        return self._transport.get_write_buffer_size() + self._queued_bytes

    def flush(self) -> None:
        """Write the frames queued during this pass of the loop, in one write."""
        queued, self._queued, self._queued_bytes = self._queued, None, 0
        if not queued or self._protocol.state is not OPEN:
            return  # websockets closed it meanwhile: no data may follow its close frame
        try:
            # websockets writes its own frames (pongs, close) to the transport as it makes
            # them, so whole frames written here never split one of them.
            self._transport.write(queued[0] if len(queued) == 1 else b"".join(queued))
        except Exception as exc:
            log.debug("connection %s: write failed: %r", self._id, exc)
            self._closing = True

    # -- flow control (core/flow.py) -------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing or self._protocol.state is not OPEN

    def written(self) -> int:
        # Grows only as the kernel takes bytes: what was sent while a backlog existed,
        # less the backlog. Payload bytes are counted, a little less than what is
        # pending (frame headers), so a client that reads nothing never seems to; with
        # compression (frames smaller than payloads) a stuck client may seem to read, and
        # is then only no longer waited for after outbox_stuck_timeout, not closed.
        return self._backlogged - self.pending_bytes

    async def ping(self) -> asyncio.Future[float] | None:
        """Send a keep-alive ping; the future completes on the pong (``None``: closing)."""
        if self._closing or self._protocol.state is not OPEN:
            return None
        try:
            return asyncio.ensure_future(await self._connection.ping())
        except ConnectionClosed:
            return None

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self.flush()  # what was sent before closing goes before the close frame
        self._closing = True
        if self._protocol.state is OPEN:
            reason = fit_close_reason(reason)
            try:
                try:
                    self._protocol.send_close(code, reason)
                except ProtocolError:  # a code the RFC does not allow on the wire
                    self._protocol.send_close(CloseCode.INTERNAL_ERROR, reason)
                self._connection.send_data()
            except Exception as exc:
                log.debug("connection %s: close failed: %r", self._id, exc)
                self._transport.abort()
                return
        # Connection.close() would also wait for the handshake, but it is a coroutine and
        # close() must not await: a client that never answers is aborted after the same
        # ``close_timeout`` (a slow consumer's close frame waits behind its full buffer).
        timeout = self._connection.close_timeout
        if timeout is not None and self._abort_timer is None:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(timeout, self._transport.abort)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._closing = True
        self._queued, self._queued_bytes = None, 0
        self._transport.abort()

    def detach(self) -> None:
        """The connection has ended: stop writing, cancel the pending abort."""
        self._closing = True
        self._queued, self._queued_bytes = None, 0
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None

    def _overflow(self, pending: int) -> None:
        if self._drop:
            self._metrics.frames_dropped += 1
            _drops.warning(
                "connection %s: outgoing queue full (%d bytes), dropped a frame "
                "(overflow policy 'drop'; total in metrics.frames_dropped)",
                self._id,
                pending,
            )
            return
        self._metrics.slow_consumer_closes += 1
        log.warning(
            "closing connection %s: outgoing queue full (%d bytes buffered)", self._id, pending
        )
        self.close(CloseCode.SLOW_CONSUMER, "outgoing queue full")
