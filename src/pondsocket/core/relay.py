"""The seam between a channel and the rest of the cluster.

A channel delivers to its local members itself and tells its relay what happened, so
other nodes can do their part. The relay must not block: it queues and returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pondsocket.core.channel import Channel
    from pondsocket.core.user import User

ALL_USERS = "ALL_USERS"
ALL_EXCEPT_SENDER = "ALL_EXCEPT_SENDER"
SENDER_CHANNEL = "CHANNEL"
"""``fromUserId`` of messages the server (not a user) sent."""

Recipients = str | list[str]
"""``ALL_USERS``, ``ALL_EXCEPT_SENDER`` or an explicit list of user ids."""


class Relay(Protocol):
    """Told of every change a channel makes, so the other nodes can follow."""

    @property
    def authenticated(self) -> bool:
        """Whether the nodes' messages are signed, so a node may change another's users."""
        ...

    def channel_opened(self, channel: Channel) -> None: ...

    def channel_closed(self, channel: Channel) -> None: ...

    def message_sent(
        self,
        channel: Channel,
        event: str,
        payload: dict[str, Any],
        recipients: Recipients,
        sender_id: str,
        request_id: str,
        *,
        system: bool = False,
    ) -> None: ...

    def member_joined(self, channel: Channel, user_id: str, assigns: dict[str, Any]) -> None: ...

    def member_left(self, channel: Channel, user_id: str) -> None: ...

    def presence_changed(
        self, channel: Channel, user_id: str, presence: dict[str, Any] | None
    ) -> None: ...

    def assigns_changed(self, channel: Channel, user_id: str, assigns: dict[str, Any]) -> None: ...

    def user_evicted(self, channel: Channel, user_id: str, reason: str) -> None: ...

    def remove_requested(self, channel: Channel, user_id: str, reason: str) -> None: ...

    async def fetch_user(
        self, channel: Channel, user_id: str, timeout: float | None
    ) -> User | None: ...

    async def wait_for_room(self) -> None:
        """Return when the cluster can take more traffic (backpressure for client input)."""

    def broadcast_elsewhere(
        self, endpoint_path: str, channel_name: str, event: str, payload: dict[str, Any]
    ) -> None: ...
