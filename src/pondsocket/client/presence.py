"""A channel's presence list, kept from the server's ``PRESENCE`` frames."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pondsocket.client")

PresenceCallback = Callable[["PresenceChange"], object]


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """One presence frame: ``kind`` is ``JOIN``, ``LEAVE`` or ``UPDATE``; ``changed`` the
    user it is about (their new presence on UPDATE); ``presence`` everyone tracked now."""

    kind: str
    changed: dict[str, Any]
    presence: list[dict[str, Any]]


class Presence:
    """The tracked users of one channel (as the server last listed them) and callbacks."""

    def __init__(self) -> None:
        self._users: list[dict[str, Any]] = []
        self._callbacks: dict[str, list[PresenceCallback]] = {
            "JOIN": [],
            "LEAVE": [],
            "UPDATE": [],
            "*": [],
        }

    @property
    def users(self) -> list[dict[str, Any]]:
        """Everyone tracked in the channel (a copy)."""
        return list(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def on_join(self, callback: PresenceCallback) -> Callable[[], None]:
        return self._add("JOIN", callback)

    def on_leave(self, callback: PresenceCallback) -> Callable[[], None]:
        return self._add("LEAVE", callback)

    def on_update(self, callback: PresenceCallback) -> Callable[[], None]:
        return self._add("UPDATE", callback)

    def on_change(self, callback: PresenceCallback) -> Callable[[], None]:
        """Every presence frame, whatever its kind."""
        return self._add("*", callback)

    def _add(self, kind: str, callback: PresenceCallback) -> Callable[[], None]:
        callbacks = self._callbacks[kind]
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def apply(self, kind: str, payload: dict[str, Any]) -> PresenceChange | None:
        """Apply one PRESENCE frame; returns the change (None if malformed)."""
        presence = payload.get("presence")
        changed = payload.get("changed")
        if kind not in ("JOIN", "LEAVE", "UPDATE") or not isinstance(presence, list):
            return None
        self._users = [p for p in presence if isinstance(p, dict)]
        change = PresenceChange(kind, changed if isinstance(changed, dict) else {}, self.users)
        for callback in [*self._callbacks[kind], *self._callbacks["*"]]:
            try:
                callback(change)
            except Exception:
                log.exception("presence callback %r failed", callback)
        return change

    def clear(self) -> None:
        self._users = []
