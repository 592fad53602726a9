"""PondSocket: realtime channels for Python, wire-compatible with the PondSocket JS client."""

from pondsocket.core.channel import Channel
from pondsocket.core.contexts import (
    ConnectionContext,
    EventContext,
    JoinContext,
    LeaveContext,
    OutgoingContext,
)
from pondsocket.core.endpoint import Endpoint
from pondsocket.core.lobby import Lobby
from pondsocket.core.metrics import Metrics
from pondsocket.core.options import OverflowPolicy, PondOptions
from pondsocket.core.outlet import CloseCode
from pondsocket.core.user import User
from pondsocket.errors import (
    AlreadyDecidedError,
    HandlerError,
    InvalidOptionError,
    NotJoinedError,
    PayloadError,
    PondSocketError,
    PresenceError,
    PresenceTooLargeError,
    StartupError,
    UsageError,
)
from pondsocket.pubsub import InMemoryPubSub, PubSub
from pondsocket.runtime import tune_gc
from pondsocket.server import PondSocket

__version__ = "0.1.0.dev0"
"""The version of this package."""

__all__ = [
    "AlreadyDecidedError",
    "Channel",
    "CloseCode",
    "ConnectionContext",
    "Endpoint",
    "EventContext",
    "HandlerError",
    "InMemoryPubSub",
    "InvalidOptionError",
    "JoinContext",
    "LeaveContext",
    "Lobby",
    "Metrics",
    "NotJoinedError",
    "OutgoingContext",
    "OverflowPolicy",
    "PayloadError",
    "PondOptions",
    "PondSocket",
    "PondSocketError",
    "PresenceError",
    "PresenceTooLargeError",
    "PubSub",
    "StartupError",
    "UsageError",
    "User",
    "__version__",
    "tune_gc",
]
