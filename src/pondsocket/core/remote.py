"""What a channel knows about its members on other nodes: plain data, no messaging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RemoteUser:
    node_id: str
    assigns: dict[str, Any] = field(default_factory=dict)


class RemoteUsers:
    """Users of one channel hosted by other nodes, and which node hosts each."""

    __slots__ = ("_users",)

    def __init__(self) -> None:
        self._users: dict[str, RemoteUser] = {}

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> RemoteUser | None:
        return self._users.get(user_id)

    def items(self) -> list[tuple[str, RemoteUser]]:
        return list(self._users.items())

    def upsert(self, user_id: str, node_id: str, assigns: dict[str, Any] | None) -> None:
        user = self._users.get(user_id)
        if user is None:
            self._users[user_id] = RemoteUser(node_id, dict(assigns or {}))
            return
        user.node_id = node_id
        if assigns is not None:
            user.assigns = dict(assigns)

    def remove(self, user_id: str) -> RemoteUser | None:
        return self._users.pop(user_id, None)

    def of_node(self, node_id: str) -> list[str]:
        return [uid for uid, user in self._users.items() if user.node_id == node_id]
