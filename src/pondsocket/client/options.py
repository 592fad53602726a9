"""Options of :class:`~pondsocket.client.PondClient`."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from pondsocket.errors import InvalidOptionError


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Timeouts are in seconds. Every wait of the client is bounded by one of them."""

    connect_timeout: float = 10.0
    """TCP connect + TLS + WebSocket handshake + the server's CONNECTION frame."""
    reconnect: bool = True
    """Reconnect after a lost connection (never after a 4xx refusal or :meth:`close`)."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    """Delay before attempt n: ``min(initial * factor**n, max)``, times a random factor in
    ``[1 - jitter, 1]`` so that clients cut at once do not all come back at once."""
    max_attempts: int | None = None
    """Consecutive failed reconnection attempts before giving up (None: keep trying)."""
    ping_interval: float | None = 20.0
    """WebSocket pings (websockets' keep-alive); None disables them."""
    ping_timeout: float | None = 20.0
    """A server that does not answer a ping in this time is dead: the client reconnects."""
    join_timeout: float = 10.0
    request_timeout: float = 10.0
    send_timeout: float = 10.0
    """How long :meth:`Channel.send` waits for a stalled channel to rejoin."""
    close_timeout: float = 5.0
    max_buffered_messages: int = 1000
    """Per channel, for ``async for``: when full the oldest message is dropped (counted in
    ``Channel.dropped``); ``on()`` handlers always see every message."""
    max_message_size: int | None = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or value is None or field.name == "backoff_jitter":
                continue
            if not value > 0:
                raise InvalidOptionError(f"{field.name} must be positive, not {value!r}")
        if not 0 <= self.backoff_jitter <= 1:
            raise InvalidOptionError("backoff_jitter must be between 0 and 1")
        if self.backoff_factor < 1:
            raise InvalidOptionError("backoff_factor must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt ``attempt`` (0 for the first)."""
        delay = min(
            self.backoff_initial * self.backoff_factor ** min(attempt, 64), self.backoff_max
        )
        return delay * (1 - self.backoff_jitter * random.random())
