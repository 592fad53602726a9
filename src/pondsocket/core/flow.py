"""Flow control: a client that broadcasts faster than its recipients read is slowed down,
instead of their outgoing queues overflowing (and every one of them being closed 4008).

How it works: an outlet whose queue is above its soft watermark when a frame is queued
(``PondOptions.outbox_soft_watermark`` of ``outbox_max_bytes``) calls :func:`note_backlog`.
If a client's message is being handled (the :class:`~pondsocket.core.session.Session` set
:data:`current_sender`), the outlet is remembered, and before that client's next message is read
the session awaits :func:`hold_back`: until every such queue is back under half the
watermark. The transport does not read from that client meanwhile, so TCP slows it down.

The wait is bounded, so one member never stalls a room for long: a queue that wrote
nothing for ``outbox_stuck_timeout`` seconds is stuck and its connection is closed 4008
(policy ``drop``: it only stops holding senders back); one that did write but stayed above
the mark that long stops holding senders back until it is under it again (its queue may
then fill up to ``outbox_max_bytes``, and the overflow policy applies).

Only the sender's task is ever marked: a broadcast from server code, or one that came
from another node, is delivered exactly as before. The fan-out path pays one comparison
per delivery (the outlet already knows its queue's size); the rest runs only when a
queue is above its mark.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Protocol

from pondsocket.core.outlet import CloseCode
from pondsocket.core.ratelog import RateLimitedLog

__all__ = [
    "STUCK_REASON",
    "Backlogged",
    "FlowState",
    "Sender",
    "current_sender",
    "hold_back",
    "note_backlog",
]

log = logging.getLogger("pondsocket.flow")
_stuck_log = RateLimitedLog(log)

STUCK_REASON = "outgoing queue stuck"
_FIRST_POLL = 0.0005  # seconds; the first check comes after one pass of the loop
_MAX_POLL = 0.005  # the queues still hold half a watermark when the sender resumes


class FlowState:
    """One outlet's flow-control bookkeeping (kept by the outlet, read by the waits)."""

    __slots__ = ("held_since", "released", "resume", "seen", "seen_at", "soft")

    def __init__(self, soft: int | None) -> None:
        self.soft = soft if soft is not None else 1 << 62  # None: never above the mark
        self.resume = self.soft // 2
        self.held_since: float | None = None
        """When a wait first found this queue above the mark (this episode)."""
        self.seen = 0
        self.seen_at = 0.0
        self.released = False
        """It held senders back for the whole timeout: not any more, until it drains."""


class Backlogged(Protocol):
    """What flow control needs of an outlet (every transport's outlet provides it)."""

    flow: FlowState

    @property
    def closing(self) -> bool:
        """The connection is closing: it holds nobody back."""
        ...

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for the client and not yet taken by the network."""
        ...

    def written(self) -> int:
        """Bytes taken by the network so far (grows while the client reads)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class Sender(Protocol):
    def held_back_by(self, outlet: Backlogged) -> None: ...


current_sender: contextvars.ContextVar[Sender | None] = contextvars.ContextVar(
    "pondsocket_sender", default=None
)
"""The client whose message the current task is handling (set by the session around
each message; tasks spawned meanwhile inherit it, harmlessly)."""


def note_backlog(outlet: Backlogged) -> None:
    """Called by an outlet queuing a frame while above its soft watermark."""
    sender = current_sender.get()
    if sender is not None:
        sender.held_back_by(outlet)


async def hold_back(
    outlets: set[Backlogged],
    stuck_timeout: float,
    close_stuck: bool,
    on_stuck: Callable[[], None],
) -> bool:
    """Wait until none of ``outlets`` is above half its watermark (or holds senders back
    any more; see the module's doc). A stuck one is closed 4008 (``close_stuck``) or
    released, and ``on_stuck()`` counts it. Returns whether it waited at all."""
    loop = asyncio.get_running_loop()
    waiting = list(outlets)
    delay = 0.0
    waited = False
    while waiting:
        now = loop.time()
        still: list[Backlogged] = []
        for outlet in waiting:
            state = outlet.flow
            if outlet.closing:
                continue
            if outlet.pending_bytes <= (state.resume if waited else state.soft):
                state.held_since, state.released = None, False
                continue
            if state.released:
                continue
            written = outlet.written()
            if state.held_since is None:
                state.held_since, state.seen, state.seen_at = now, written, now
            elif written > state.seen:
                state.seen, state.seen_at = written, now
            elif now - state.seen_at >= stuck_timeout:
                _stuck(outlet, stuck_timeout, close_stuck)
                on_stuck()
                continue
            if now - state.held_since >= stuck_timeout:
                state.released = True  # it reads, but too slowly to get under the mark
                continue
            still.append(outlet)
        waiting = still
        if not waiting:
            break
        await asyncio.sleep(delay)
        waited = True
        delay = min(delay * 2 or _FIRST_POLL, _MAX_POLL)
    return waited


def _stuck(outlet: Backlogged, timeout: float, close: bool) -> None:
    outlet.flow.released = True  # either way it holds nobody back any more
    if close:
        _stuck_log.warning(
            "closing a connection with %d: its outgoing queue (%d bytes) wrote nothing for"
            " %.1f s while senders waited for it (outbox_stuck_timeout)",
            CloseCode.SLOW_CONSUMER,
            outlet.pending_bytes,
            timeout,
        )
        outlet.close(CloseCode.SLOW_CONSUMER, STUCK_REASON)
    else:
        _stuck_log.warning(
            "a connection's outgoing queue (%d bytes) wrote nothing for %.1f s: it no longer"
            " holds senders back (overflow policy 'drop': it stays open)",
            outlet.pending_bytes,
            timeout,
        )
