"""Presence of one channel as plain data (docs/protocol.md).

Operations validate and return the change; building and sending frames is the channel's
job. UPDATE frames carry the *new* presence in ``changed`` (Go's choice; the JS server
sends the previous one, which no client relies on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pondsocket.errors import PresenceError
from pondsocket.wire.messages import PresenceEvent

Presence = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PresenceChange:
    event: PresenceEvent
    user_id: str
    changed: Presence


class PresenceTable:
    """Tracked users of one channel, in tracking order."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, Presence] = {}

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> Presence | None:
        return self._entries.get(user_id)

    def user_ids(self) -> list[str]:
        return list(self._entries)

    def as_dict(self) -> dict[str, Presence]:
        return dict(self._entries)

    def values(self) -> list[Presence]:
        return list(self._entries.values())

    def track(self, user_id: str, presence: Presence) -> PresenceChange:
        if user_id in self._entries:
            raise PresenceError(f"user {user_id} is already tracked; use update_presence()")
        self._entries[user_id] = presence
        return PresenceChange(PresenceEvent.JOIN, user_id, presence)

    def update(self, user_id: str, presence: Presence) -> PresenceChange:
        if user_id not in self._entries:
            raise PresenceError(f"user {user_id} is not tracked; call track() first")
        self._entries[user_id] = presence
        return PresenceChange(PresenceEvent.UPDATE, user_id, presence)

    def untrack(self, user_id: str) -> PresenceChange | None:
        """Remove a user; ``None`` if it was not tracked (untrack is idempotent)."""
        presence = self._entries.pop(user_id, None)
        if presence is None:
            return None
        return PresenceChange(PresenceEvent.LEAVE, user_id, presence)
