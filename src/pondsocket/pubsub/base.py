"""The PubSub interface every broker backend implements.

Spec for backend authors:

* A *topic* is a non-empty string. A *pattern* ending in ``.*`` is a prefix pattern: it
  matches every topic starting with the text before the ``.*`` (docs/protocol.md), so
  ``pond:v1:default:.*`` matches ``pond:v1:default:chat`` and ``pond.chat.*`` matches
  ``pond.chat.room1`` and also ``pond.chatter``. Any other pattern is an exact topic, taken literally (a ``*``
  elsewhere has no special meaning: channel names chosen by clients may contain one). Handlers are ``async def handler(topic: str, data: bytes)``.
* ``subscribe(pattern, handler)`` returns a :class:`Subscription`; cancelling it removes
  that handler only. The broker-side subscription is reference-counted: the last handler
  of a pattern gone, the backend unsubscribes from the broker.
* ``unsubscribe(pattern)`` drops every handler of the pattern.
* ``publish(topic, data)`` sends bytes to every subscriber of a matching pattern, this
  node's own included (the cluster layer filters its own messages).
* Delivery is per topic in publish order. A handler never blocks the reader or other
  handlers: each subscription has a bounded queue, and when it is full the message is
  dropped for that subscription, counted (``dropped``) and logged. A handler that raises
  is logged with the topic and traceback and delivery goes on.
* ``close()`` is idempotent; any later call raises :class:`PubSubClosedError`.
* Connection state: a backend whose broker can go away reports it through
  ``_notify(BusState.DISCONNECTED)`` and, once reconnected and every subscription is
  restored, ``_notify(BusState.RECONNECTED)``. Listeners (the cluster layer) register with
  :meth:`PubSub.add_state_listener`; on RECONNECTED they resync, because whatever was
  published while the node was away is lost (pub/sub is at most once). A backend that
  drops messages for any other reason (a subscriber cut off for falling behind) reports
  ``BusState.RECONNECTED`` too once it is back, so nothing is silently missed.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pondsocket.errors import InvalidOptionError, PondSocketError
from pondsocket.pubsub.failures import Cause

if TYPE_CHECKING:
    from pondsocket.history.store import HistoryStore

MessageHandler = Callable[[str, bytes], Awaitable[None]]
"""What :meth:`PubSub.subscribe` calls for each message: ``async def handler(topic, data)``."""


class PubSubError(PondSocketError):
    """A pubsub backend failed."""


class PubSubClosedError(PubSubError, RuntimeError):
    """The pubsub was closed; create a new one."""


class PubSubUnavailableError(PubSubError):
    """The broker cannot take the message now: unreachable at connect time, or the
    backend's bounded outage buffer stayed full; the message says which.

    ``cause`` is set when the backend knows why better than its exception chain tells
    (:func:`pondsocket.pubsub.failures.classify` reads it)."""

    def __init__(self, message: str, *, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class MessageTooLargeError(PubSubError, ValueError):
    """``publish()`` got a message over the backend's ``max_message_size``; nothing was sent."""

    def __init__(self, topic: str, size: int, limit: int, detail: str = "") -> None:
        super().__init__(
            f"message of {size} bytes on {topic!r} exceeds max_message_size ({limit} bytes)"
            f"{detail}; nothing was sent"
        )
        self.topic, self.size, self.limit = topic, size, limit


def validate_pattern(pattern: str) -> None:
    if not pattern or pattern == ".*":
        raise InvalidOptionError(f"pubsub pattern {pattern!r} is empty")


def pattern_matches(pattern: str, topic: str) -> bool:
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-2])
    return topic == pattern


class Subscription(abc.ABC):
    """One handler's subscription; cancel it to stop delivery to that handler."""

    pattern: str
    """The pattern subscribed to."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop delivering to this handler; the pattern's other handlers keep theirs."""


class BusState(enum.Enum):
    """A change of a backend's link to its broker, told to :meth:`PubSub.add_state_listener`
    listeners: ``DISCONNECTED``, then ``RECONNECTED`` once every subscription is restored
    (what was published meanwhile may be lost)."""

    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"


StateListener = Callable[[BusState], None]


class PubSub(abc.ABC):
    """The bus between the nodes of a cluster, implemented by every backend (the contract:
    :mod:`pondsocket.pubsub.base`). Pass one to ``PondSocket(pubsub=...)``."""

    _state_listeners: list[StateListener]

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(state)`` on every connection change; returns a remover."""
        listeners = self.__dict__.setdefault("_state_listeners", [])
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None

    def _notify(self, state: BusState) -> None:
        for listener in list(self.__dict__.get("_state_listeners", ())):
            try:
                listener(state)
            except Exception:
                logging.getLogger("pondsocket.pubsub").exception("state listener failed")

    @abc.abstractmethod
    async def subscribe(self, pattern: str, handler: MessageHandler) -> Subscription:
        """Call ``handler(topic, data)`` for every message on a topic ``pattern`` matches
        (an exact topic, or a ``prefix.*``); cancel the returned handle to stop."""

    @abc.abstractmethod
    async def unsubscribe(self, pattern: str) -> None:
        """Drop every handler subscribed to ``pattern``."""

    @abc.abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of a pattern matching ``topic``, this node's
        own included."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend; idempotent. Any later call raises
        :class:`PubSubClosedError`."""

    def history_store(self) -> HistoryStore | None:
        """The channel-history store that lives where this bus does (Redis Streams for
        Redis, the process for the in-memory bus), or ``None``: then a server whose
        channels keep history needs ``PondSocket(history=...)``."""
        return None
