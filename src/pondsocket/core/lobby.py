"""A channel pattern and its handlers ("lobby"): join, events, outgoing, leave."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pondsocket.core.contexts import LeaveContext
from pondsocket.core.history import HistoryConfig
from pondsocket.core.invoke import Middleware, call_handler
from pondsocket.core.user import User
from pondsocket.errors import UsageError
from pondsocket.routing import PathPattern, Route, compile_pattern

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel
    from pondsocket.core.contexts import EventContext, JoinContext, OutgoingContext

log = logging.getLogger("pondsocket.lobby")

JoinHandler = Callable[["JoinContext"], Any]
EventHandler = Callable[["EventContext"], Any]
LeaveHandler = Callable[["LeaveContext"], Any]
OutgoingHandler = Callable[["OutgoingContext"], None]
EH = TypeVar("EH", bound=EventHandler)
LH = TypeVar("LH", bound=LeaveHandler)
OH = TypeVar("OH", bound=OutgoingHandler)
F = TypeVar("F", bound=Callable[..., Any])


def _register(handler: F | None, add: Callable[[F], None]) -> F | Callable[[F], F]:
    """Register now (``on_x(..., fn)``) or return a decorator (``@on_x(...)``)."""
    if handler is not None:
        add(handler)
        return handler

    def decorator(fn: F) -> F:
        add(fn)
        return fn

    return decorator


class Lobby:
    """Handlers shared by every channel whose name matches ``pattern``."""

    def __init__(
        self, pattern: str, handler: JoinHandler, middleware: tuple[Middleware, ...]
    ) -> None:
        self.pattern: PathPattern = compile_pattern(pattern)
        self.join_handler = handler
        self.middleware = middleware
        self._events: list[tuple[PathPattern, EventHandler]] = []
        self._outgoing: list[tuple[PathPattern, OutgoingHandler]] = []
        self._outgoing_cache: dict[str, tuple[OutgoingHandler, ...]] = {}
        self.leave_handlers: list[LeaveHandler] = []
        self.history_config: HistoryConfig | None = None
        self.history_required = True

    def __repr__(self) -> str:
        return f"<Lobby {self.pattern.pattern!r}>"

    @overload
    def on_message(self, event_pattern: str) -> Callable[[EH], EH]: ...
    @overload
    def on_message(self, event_pattern: str, handler: EH) -> EH: ...
    def on_message(self, event_pattern: str, handler: EH | None = None) -> Any:
        """Handle client events whose name matches ``event_pattern`` (first match wins).

        Usable directly, ``lobby.on_message("ping", fn)``, or as a decorator.
        """
        pattern = compile_pattern(event_pattern)
        return _register(handler, lambda fn: self._events.append((pattern, fn)))

    @overload
    def on_leave(self) -> Callable[[LH], LH]: ...
    @overload
    def on_leave(self, handler: LH) -> LH: ...
    def on_leave(self, handler: LH | None = None) -> Any:
        """Run ``handler(LeaveContext)`` whenever a user leaves a channel of this lobby."""
        return _register(handler, self.leave_handlers.append)

    @overload
    def on_outgoing(self, event_pattern: str) -> Callable[[OH], OH]: ...
    @overload
    def on_outgoing(self, event_pattern: str, handler: OH) -> OH: ...
    def on_outgoing(self, event_pattern: str, handler: OH | None = None) -> Any:
        """Intercept outgoing broadcasts per recipient: ``ctx.transform(...)`` or ``ctx.block()``.

        Outgoing handlers run inside the fan-out loop, once per recipient, so they must be
        plain (non-async) functions and fast.
        """
        pattern = compile_pattern(event_pattern)

        def add(fn: OutgoingHandler) -> None:
            if inspect.iscoroutinefunction(fn):
                raise UsageError("outgoing handlers must be plain functions, not coroutines")
            self._outgoing.append((pattern, fn))
            self._outgoing_cache.clear()

        return _register(handler, add)

    def history(
        self,
        size: int = 100,
        ttl: float = 300.0,
        *,
        meta_ttl: float = 86_400.0,
        required: bool = True,
    ) -> Lobby:
        """Keep the last ``size`` broadcasts (at most ``ttl`` seconds old) of every channel
        of this pattern, cluster-wide, so rejoining clients recover what they missed
        (docs/recovery.md). Call before the first join; returns the lobby. A server whose
        pubsub has no history store refuses to start, unless ``required=False``: then
        these channels run without history (one log line says so)."""
        self.history_config = HistoryConfig(size, ttl, meta_ttl)
        self.history_required = required
        return self

    def find_event_handler(self, event: str) -> tuple[EventHandler, Route] | None:
        for pattern, handler in self._events:
            route = pattern.match(event)
            if route is not None:
                return handler, route
        return None

    def outgoing_handlers_for(self, event: str) -> tuple[OutgoingHandler, ...]:
        if not self._outgoing:
            return ()
        cached = self._outgoing_cache.get(event)
        if cached is None:
            cached = tuple(h for p, h in self._outgoing if p.match(event) is not None)
            if len(self._outgoing_cache) < 4096:  # bounded: event names come from clients
                self._outgoing_cache[event] = cached
        return cached

    async def run_leave(
        self, handler: LeaveHandler, channel: Channel, user: User, reason: str
    ) -> None:
        await call_handler(handler, LeaveContext(channel, user, reason))
