"""One channel of a :class:`~pondsocket.client.PondClient`: join, leave, messages,
requests, presence and recovery of history channels (docs/recovery.md)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pondsocket.client.errors import (
    ChannelClosedError,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    JoinDeclinedError,
    NotConnectedError,
    RequestFailedError,
)
from pondsocket.client.frames import Message, ServerFrame, encode_message
from pondsocket.client.presence import Presence
from pondsocket.client.state import ChannelState, Watched

if TYPE_CHECKING:
    from pondsocket.client.connection import PondClient

log = logging.getLogger("pondsocket.client")

Handler = Callable[[Message], object]
RecoveryCallback = Callable[["Recovery"], object]
_FINAL = (ChannelState.CLOSED, ChannelState.DECLINED)
# How far below the last position a broadcast may still arrive late (and be told from a
# duplicate by its offset): the few stored while a join's position was being read.
_LATE_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Recovery:
    """The ``SYSTEM``/``recovery`` signal after a join of a history channel.

    ``requested`` says whether this join asked to recover (a rejoin with a known position).
    ``recovered`` true: the ``missed`` broadcasts were delivered before it, in order.
    ``recoverable`` false: messages were lost; ``reason`` says why (``too_old``,
    ``epoch_changed``, ``invalid``, ``unavailable``, ``overflow``): reload the state."""

    recovered: bool
    reason: str | None
    missed: int
    offset: int | None
    epoch: str | None
    requested: bool

    @property
    def recoverable(self) -> bool:
        return self.recovered or self.reason == "not_requested"


class Channel:
    """Created by :meth:`PondClient.channel`; not joined until :meth:`join`."""

    def __init__(self, client: PondClient, name: str, params: dict[str, Any]) -> None:
        self.name = name
        self.params = dict(params)
        self.state: Watched[ChannelState] = Watched(ChannelState.IDLE)
        self.presence = Presence()
        self.position: dict[str, Any] | None = None
        """The last ``{offset, epoch}`` seen (history channels): where a rejoin recovers from."""
        self.recovery: Recovery | None = None
        self.declined: JoinDeclinedError | None = None
        self.closed_reason: str | None = None
        self.dropped = 0
        """Messages dropped from the ``async for`` buffer because it was full (oldest first)."""
        self.duplicates = 0
        self._seen: set[int] = set()  # the offsets of the last _LATE_WINDOW broadcasts
        self._seen_order: deque[int] = deque(maxlen=_LATE_WINDOW)
        self._client = client
        self._buffer: deque[Message] = deque(maxlen=client.options.max_buffered_messages)
        self._wakeup = asyncio.Event()
        self._handlers: dict[str, list[Handler]] = {}
        self._recovery_callbacks: list[RecoveryCallback] = []
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._events: dict[str, str] = {}  # request id -> event, for error messages
        self._tasks: set[asyncio.Future[Any]] = set()
        self._join_id: str | None = None
        self._left: asyncio.Event | None = None
        self._wanted = False
        self._error: ClientError | None = None
        self._recover_requested = False

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state.value}>"

    # -- joining and leaving -------------------------------------------------------

    async def join(self, timeout: float | None = None) -> Channel:
        """Join and wait for the answer. Raises :class:`JoinDeclinedError`,
        :class:`ClientTimeoutError`, or the client's error if the connection failed."""
        if self.state.value is ChannelState.JOINED:
            return self
        self._client.check_usable()
        self._wanted, self._error, self.declined = True, None, None
        if self._client.connected:
            await self._send_join()
        elif self.state.value is not ChannelState.STALLED:
            self._set_state(ChannelState.STALLED)  # joins once the connection is back
        wait = self._client.options.join_timeout if timeout is None else timeout
        state = await self.state.wait_for(ChannelState.JOINED, *_FINAL, timeout=wait)
        if state is not ChannelState.JOINED:
            raise self._closed_error()
        return self

    async def leave(self, timeout: float | None = None) -> None:
        """Leave (waits for the server's ``EXIT_ACKNOWLEDGE``); the channel is CLOSED
        whatever happens (a lost connection ends the membership on the server too)."""
        was_joined = self.state.value is ChannelState.JOINED
        self._wanted = False
        wait = self._client.options.request_timeout if timeout is None else timeout
        try:
            if was_joined and self._client.connected:
                self._left = asyncio.Event()
                _, text = encode_message("LEAVE_CHANNEL", self.name, "LEAVE_CHANNEL", {})
                await self._client.send_text(text)
                async with asyncio.timeout(wait):
                    await self._left.wait()
        except TimeoutError:
            raise ClientTimeoutError(f"no EXIT_ACKNOWLEDGE for {self.name} in {wait} s") from None
        finally:
            self._left = None
            self._close("left")

    async def _send_join(self) -> None:
        params = dict(self.params)
        self._recover_requested = self.position is not None
        if self.position is not None:
            params["recover"] = dict(self.position)
        self._join_id, text = encode_message("JOIN_CHANNEL", self.name, "JOIN_CHANNEL", params)
        self._set_state(ChannelState.JOINING)
        await self._client.send_text(text)

    # -- sending -------------------------------------------------------------------

    async def send(self, event: str, payload: dict[str, Any] | None = None) -> None:
        """Send an event. Waits (up to ``send_timeout``) while the channel rejoins."""
        await self._wait_joined(self._client.options.send_timeout)
        _, text = encode_message("BROADCAST", self.name, event, payload or {})
        await self._client.send_text(text)

    async def request(
        self, event: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Message:
        """Send an event and return the server's reply (the SYSTEM frame echoing its
        requestId). Raises :class:`ClientTimeoutError` without a reply in ``timeout`` s,
        :class:`RequestFailedError` on an ERROR reply, :class:`NotConnectedError` if the
        connection drops before the reply."""
        wait = self._client.options.request_timeout if timeout is None else timeout
        await self._wait_joined(wait)
        request_id, text = encode_message("BROADCAST", self.name, event, payload or {})
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._events[request_id] = event
        try:
            await self._client.send_text(text)
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            raise ClientTimeoutError(f"no reply to {event!r} on {self.name} in {wait} s") from None
        finally:
            self._pending.pop(request_id, None)
            self._events.pop(request_id, None)

    async def _wait_joined(self, timeout: float) -> None:
        if self.state.value is ChannelState.JOINED:
            return
        if self.state.value in _FINAL or not self._wanted:
            raise self._closed_error()
        state = await self.state.wait_for(ChannelState.JOINED, *_FINAL, timeout=timeout)
        if state is not ChannelState.JOINED:
            raise self._closed_error()

    # -- receiving -----------------------------------------------------------------

    def on(self, event: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(message)`` for every message with this event (``"*"``: all).
        A coroutine function is run as a task. Returns an unsubscribe function."""
        handlers = self._handlers.setdefault(event, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def on_recovery(self, callback: RecoveryCallback) -> Callable[[], None]:
        """Call ``callback(recovery)`` on every ``recovery`` signal (every join of a
        history channel): check ``recovery.recoverable`` to know if anything was lost."""
        self._recovery_callbacks.append(callback)
        return lambda: self._recovery_callbacks.remove(callback)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()

    async def messages(self) -> AsyncIterator[Message]:
        """Buffered messages, oldest first, until the channel is closed for good (then the
        iteration ends, or raises the error that closed it). The buffer keeps at most
        ``max_buffered_messages``; when full the oldest is dropped (``dropped`` counts)."""
        while True:
            if self._buffer:
                yield self._buffer.popleft()
                continue
            if self.state.value in _FINAL and not self._wanted:
                if self._error is not None:
                    raise self._error
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    # -- frames from the client ----------------------------------------------------

    def handle(self, frame: ServerFrame) -> None:
        if frame.action == "PRESENCE":
            self.presence.apply(frame.event, frame.payload)
        elif frame.requestId in self._pending and frame.action in ("SYSTEM", "ERROR"):
            self._resolve(frame)
        elif frame.action == "SYSTEM":
            self._system(frame)
        elif frame.action == "BROADCAST":
            if self._note_position(frame.payload.get("_position")):
                self._deliver(Message.from_frame(frame))
        else:
            self._deliver(Message.from_frame(frame))

    def _resolve(self, frame: ServerFrame) -> None:
        future = self._pending.pop(frame.requestId)
        if future.done():
            return
        if frame.action == "ERROR":
            future.set_exception(
                RequestFailedError(self._events.pop(frame.requestId, frame.event), frame.payload)
            )
        else:
            future.set_result(Message.from_frame(frame))

    def _system(self, frame: ServerFrame) -> None:
        event = frame.event
        if event == "ACKNOWLEDGE" and frame.requestId in (self._join_id, ""):
            self._set_state(ChannelState.JOINED)
        elif event == "ACKNOWLEDGE":
            pass  # the answer to an older join
        elif event == "UNAUTHORIZED" and frame.requestId == self._join_id:
            self.declined = JoinDeclinedError(self.name, frame.payload)
            self._wanted, self._error = False, self.declined
            self._set_state(ChannelState.DECLINED)
        elif event == "EXIT_ACKNOWLEDGE":
            if self._left is not None:
                self._left.set()
        elif event == "recovery":
            self._on_recovery(frame.payload)
            self._deliver(Message.from_frame(frame))
        else:
            if event == "kicked_out":
                self._wanted = False
                self._close(str(frame.payload.get("reason") or "evicted"))
            self._deliver(Message.from_frame(frame))

    def _note_position(self, position: object) -> bool:
        """Keep the last position; False for a broadcast already delivered. One at or
        below the last position is new only if it is recent and not seen yet: a broadcast
        stored just before the join's position was read may still arrive after it."""
        if not isinstance(position, dict):
            return True
        offset, epoch = position.get("offset"), position.get("epoch")
        if not isinstance(offset, int) or not isinstance(epoch, str):
            return True
        last = self.position
        if last is not None and last.get("epoch") == epoch and offset <= last["offset"]:
            if offset in self._seen or offset <= last["offset"] - _LATE_WINDOW:
                self.duplicates += 1
                return False
        else:
            if last is None or last.get("epoch") != epoch:
                self._seen.clear()
                self._seen_order.clear()
            self.position = {"offset": offset, "epoch": epoch}
        if len(self._seen_order) == self._seen_order.maxlen:
            self._seen.discard(self._seen_order[0])
        self._seen_order.append(offset)
        self._seen.add(offset)
        return True

    def _on_recovery(self, payload: dict[str, Any]) -> None:
        offset, epoch = payload.get("offset"), payload.get("epoch")
        if isinstance(offset, int) and isinstance(epoch, str):
            self.position = {"offset": offset, "epoch": epoch}
        missed = payload.get("missed")
        reason = payload.get("reason")
        self.recovery = Recovery(
            recovered=payload.get("recovered") is True,
            reason=reason if isinstance(reason, str) else None,
            missed=missed if isinstance(missed, int) else 0,
            offset=offset if isinstance(offset, int) else None,
            epoch=epoch if isinstance(epoch, str) else None,
            requested=self._recover_requested,
        )
        for callback in list(self._recovery_callbacks):
            self._call(callback, self.recovery)

    def _deliver(self, message: Message) -> None:
        for handler in [*self._handlers.get(message.event, ()), *self._handlers.get("*", ())]:
            self._call(handler, message)
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest
        self._buffer.append(message)
        self._wakeup.set()

    def _call(self, callback: Callable[[Any], object], value: Any) -> None:
        try:
            result = callback(value)
        except Exception:
            log.exception("handler %r of %s failed", callback, self.name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- connection changes (called by the client) ---------------------------------

    async def connected(self) -> None:
        """The connection is (back) up: rejoin if the app wants this channel."""
        if self._wanted and self.state.value is ChannelState.STALLED:
            await self._send_join()

    def disconnected(self) -> None:
        """The connection dropped: pending requests fail, a joined channel stalls."""
        self._join_id = None
        self._fail_pending(
            NotConnectedError(f"the connection was lost before a reply ({self.name})")
        )
        if self._left is not None:
            self._left.set()
        if self._wanted and self.state.value not in _FINAL:
            self._set_state(ChannelState.STALLED)
        elif self.state.value in (ChannelState.JOINED, ChannelState.JOINING):
            self._close("connection lost")

    def fail(self, error: ClientError | None, reason: str) -> None:
        """The client closed (``error`` None) or failed for good."""
        self._fail_pending(error or ClientClosedError(f"{self.name}: the client was closed"))
        if self._wanted or self.state.value not in _FINAL:
            self._wanted = False
            self._error = error
            self._close(reason)

    def _fail_pending(self, error: ClientError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _close(self, reason: str) -> None:
        if self.state.value not in _FINAL:
            self.closed_reason = reason
        if self.state.value is not ChannelState.DECLINED:
            self._set_state(ChannelState.CLOSED)

    def _closed_error(self) -> ClientError:
        if self._error is not None:
            return self._error
        return ChannelClosedError(f"{self.name} is {self.state.value} ({self.closed_reason})")

    def _set_state(self, state: ChannelState) -> None:
        self.state.set(state)
        self._wakeup.set()
