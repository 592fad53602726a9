"""The boundary between the core and a transport.

The core never touches a socket: it hands encoded frames to an :class:`Outlet`, whose
``send`` must not block or await (the fan-out loop calls it once per recipient with the
same bytes). Each transport implements an outlet over a bounded queue and applies the
:class:`~pondsocket.core.options.OverflowPolicy` when it is full.
"""

from __future__ import annotations

import enum
from typing import Protocol


class CloseCode(enum.IntEnum):
    """WebSocket close codes PondSocket uses. 4000-4099 are PondSocket's own."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    """A text message that is not valid UTF-8 (RFC 6455 §8.1)."""
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    CLOSED_BY_SERVER = 4000
    """The application closed the connection (``close_connection``)."""
    SLOW_CONSUMER = 4008
    """The outgoing queue overflowed: the client did not read fast enough."""


class Outlet(Protocol):
    """Write side of one client connection, as seen by the core."""

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame. Never blocks; applies the overflow policy when full."""

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection; idempotent."""
